package profiles

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
)

// Error is one problem in a profiles directory, located in its file.
// Line and Col are 1-based; 0 means the position is unknown.
type Error struct {
	Path string
	Line int
	Col  int
	Msg  string
}

func (e *Error) Error() string {
	switch {
	case e.Line > 0 && e.Col > 0:
		return fmt.Sprintf("%s:%d:%d: %s", e.Path, e.Line, e.Col, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("%s:%d: %s", e.Path, e.Line, e.Msg)
	default:
		return fmt.Sprintf("%s: %s", e.Path, e.Msg)
	}
}

// ErrorList is every problem found while loading a directory, sorted by
// path, line and column. Its Error method prints one problem per line.
type ErrorList []*Error

func (l ErrorList) Error() string {
	var b strings.Builder
	for i, e := range l {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Sort orders the list by path, line, column and message.
func (l ErrorList) Sort() {
	slices.SortStableFunc(l, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Path, b.Path), cmp.Compare(a.Line, b.Line),
			cmp.Compare(a.Col, b.Col), cmp.Compare(a.Msg, b.Msg))
	})
}

// Err returns the list as an error, or nil when it is empty.
func (l ErrorList) Err() error {
	if len(l) == 0 {
		return nil
	}
	l.Sort()
	return l
}

type errorCollector struct {
	errs     ErrorList
	warnings ErrorList
}

func (c *errorCollector) add(path string, line, col int, format string, args ...any) {
	c.errs = append(c.errs, &Error{Path: path, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)})
}

func (c *errorCollector) warn(path string, line, col int, format string, args ...any) {
	c.warnings = append(c.warnings, &Error{Path: path, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)})
}

// ErrorAt is a problem at a YAML node of a file: at the node's first key
// when it is a mapping (where a reader looks), else at the node itself.
func ErrorAt(path string, n ast.Node, format string, args ...any) *Error {
	switch v := n.(type) {
	case *ast.MappingNode:
		if len(v.Values) > 0 {
			n = v.Values[0].Key
		}
	case *ast.MappingValueNode:
		n = v.Key
	}
	line, col := NodePos(n)
	return &Error{Path: path, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)}
}

// YAMLError is a parse or decode error of goccy/go-yaml, located.
func YAMLError(path string, err error) *Error {
	var ye yaml.Error
	if errors.As(err, &ye) {
		line, col := 0, 0
		if tk := ye.GetToken(); tk != nil && tk.Position != nil {
			line, col = tk.Position.Line, tk.Position.Column
		}
		return &Error{Path: path, Line: line, Col: col, Msg: ye.GetMessage()}
	}
	return &Error{Path: path, Msg: err.Error()}
}
