package profiles

import (
	"strings"

	"github.com/goccy/go-yaml/ast"
)

// The YAML node helpers every strict decoder of the project uses (profiles
// here; load scenarios): where a node is, what it is, what it holds.

// NodePos is where a node starts, 1-based; 0, 0 when unknown.
func NodePos(n ast.Node) (line, col int) {
	if n == nil {
		return 0, 0
	}
	tk := n.GetToken()
	if tk == nil || tk.Position == nil {
		return 0, 0
	}
	return tk.Position.Line, tk.Position.Column
}

// Unwrap looks through anchors and tags to the value node.
func Unwrap(n ast.Node) ast.Node {
	for {
		switch v := n.(type) {
		case *ast.AnchorNode:
			n = v.Value
		case *ast.TagNode:
			n = v.Value
		default:
			return n
		}
	}
}

// MappingValues returns a mapping's key/value pairs, or false when the node
// is not a mapping.
func MappingValues(n ast.Node) ([]*ast.MappingValueNode, bool) {
	switch v := Unwrap(n).(type) {
	case *ast.MappingNode:
		return v.Values, true
	case *ast.MappingValueNode:
		return []*ast.MappingValueNode{v}, true
	}
	return nil, false
}

// NodeKind names a node's type for error messages ("a string", "a list").
func NodeKind(n ast.Node) string {
	n = Unwrap(n)
	if n == nil {
		return "nothing"
	}
	switch n.Type() {
	case ast.NullType:
		return "an empty value"
	case ast.BoolType:
		return "a boolean"
	case ast.IntegerType:
		return "an integer"
	case ast.FloatType, ast.InfinityType, ast.NanType:
		return "a number"
	case ast.StringType, ast.LiteralType:
		return "a string"
	case ast.MappingType, ast.MappingValueType:
		return "a mapping"
	case ast.SequenceType:
		return "a list"
	case ast.AliasType:
		return "an alias"
	}
	return strings.ToLower(n.Type().String())
}

// KeyName is a mapping key as written.
func KeyName(mv *ast.MappingValueNode) string {
	if tk := mv.Key.GetToken(); tk != nil {
		return tk.Value
	}
	return mv.Key.String()
}
