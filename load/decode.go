package load

import (
	"cmp"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/bootfleet/bootfleet/profiles"
)

// Limits on what a scenario may ask for.
const (
	maxSessions = 100000
	maxDataRows = 1000000
)

// LoadFile reads and checks a scenario file; a data file is found beside it.
func LoadFile(path string) (*Scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("scenario: %w", err)
	}
	return Parse(path, b, filepath.Dir(path))
}

// Parse checks a scenario and reports every problem at once, each as
// file:line:col, in a profiles.ErrorList: unknown and duplicate keys,
// wrong types, bad values, bad templates and a bad data file alike. dir is
// where a relative data file is looked for.
func Parse(file string, data []byte, dir string) (*Scenario, error) {
	d := &decoder{file: file}
	sc := d.scenario(data, dir)
	if err := d.errs.Err(); err != nil {
		return nil, err
	}
	return sc, nil
}

// decoder walks a scenario's YAML syntax tree itself, checking every key
// and type, so that all problems of a file are found in one pass, each at
// its position (the pattern of the profiles decoder).
type decoder struct {
	file string
	errs profiles.ErrorList
}

// errAt records a problem at a node (at its first key for a mapping).
func (d *decoder) errAt(n ast.Node, format string, args ...any) {
	if n == nil {
		d.errs = append(d.errs, &profiles.Error{Path: d.file, Line: 1, Col: 1, Msg: fmt.Sprintf(format, args...)})
		return
	}
	d.errs = append(d.errs, profiles.ErrorAt(d.file, n, format, args...))
}

func (d *decoder) yamlErr(err error) {
	d.errs = append(d.errs, profiles.YAMLError(d.file, err))
}

// fields walks a mapping, calls set for every known key (with the value
// and the key node), and reports unknown and duplicate keys. It returns
// false when n is no mapping.
func (d *decoder) fields(n ast.Node, what string, known []string, set func(key string, v, kn ast.Node)) bool {
	values, ok := profiles.MappingValues(n)
	if !ok {
		d.errAt(n, "%s: want a mapping with keys %s, got %s", what, strings.Join(known, ", "), profiles.NodeKind(n))
		return false
	}
	seen := map[string]ast.Node{}
	for _, mv := range values {
		k := profiles.KeyName(mv)
		if prev, dup := seen[k]; dup {
			l, c := profiles.NodePos(prev)
			d.errAt(mv.Key, "%s: duplicate key %q (first at line %d, column %d)", what, k, l, c)
			continue
		}
		seen[k] = mv.Key
		if !slices.Contains(known, k) {
			d.errAt(mv.Key, "%s: unknown key %q (known keys: %s)", what, k, strings.Join(known, ", "))
			continue
		}
		set(k, mv.Value, mv.Key)
	}
	return true
}

// str decodes a text value; numbers are taken as written (a PIN to type).
func (d *decoder) str(n ast.Node, field string) (string, bool) {
	switch v := profiles.Unwrap(n).(type) {
	case *ast.StringNode:
		return v.Value, true
	case *ast.LiteralNode:
		return v.Value.Value, true
	case *ast.IntegerNode, *ast.FloatNode:
		return v.GetToken().Value, true
	}
	d.errAt(n, "%s: want a string, got %s", field, profiles.NodeKind(n))
	return "", false
}

func (d *decoder) int(n ast.Node, field string, lo, hi int) (int, bool) {
	v, ok := profiles.Unwrap(n).(*ast.IntegerNode)
	if !ok {
		d.errAt(n, "%s: want an integer, got %s", field, profiles.NodeKind(n))
		return 0, false
	}
	var x int64
	switch i := v.Value.(type) {
	case int64:
		x = i
	case uint64:
		x = int64(min(i, 1<<62))
	}
	if x < int64(lo) || x > int64(hi) {
		d.errAt(n, "%s: %s is out of range (%d to %d)", field, v.Token.Value, lo, hi)
		return 0, false
	}
	return int(x), true
}

func (d *decoder) bool(n ast.Node, field string) bool {
	v, ok := profiles.Unwrap(n).(*ast.BoolNode)
	if !ok {
		d.errAt(n, "%s: want true or false, got %s", field, profiles.NodeKind(n))
		return false
	}
	return v.Value
}

// duration decodes a Go duration such as 500ms, 30s or 5m; positive
// unless zero is allowed.
func (d *decoder) duration(n ast.Node, field string, zeroOK bool) (time.Duration, bool) {
	s, ok := d.str(n, field)
	if !ok {
		return 0, false
	}
	v, err := time.ParseDuration(s)
	switch {
	case err != nil:
		d.errAt(n, "%s %q: want a duration such as 500ms, 30s or 5m", field, s)
	case v < 0 || v == 0 && !zeroOK:
		d.errAt(n, "%s %q: want a positive duration", field, s)
	case v > 1000*time.Hour:
		d.errAt(n, "%s %q: at most 1000h", field, s)
	default:
		return v, true
	}
	return 0, false
}

// template is a step text: Go text/template with .Session, .Iteration and
// .Data (the session's row of the data file). It is tried once with
// session 1's data, so that a misspelt field or data column is an error
// here and not in the middle of a run.
func (d *decoder) template(n ast.Node, field, text string, sample SessionData) (*template.Template, string) {
	t, err := template.New(field).Option("missingkey=error").Parse(text)
	if err != nil {
		d.errAt(n, "%s: %s", field, templateMsg(err))
		return nil, ""
	}
	var b strings.Builder
	if err := t.Execute(&limitWriter{w: &b, n: 1 << 20}, sample); err != nil {
		msg := templateMsg(err)
		switch {
		case strings.Contains(msg, "map has no entry for key") && len(sample.Data) == 0:
			msg += " (.Data.<column> needs a data file: data: users.csv)"
		case strings.Contains(msg, "map has no entry for key"):
			msg += fmt.Sprintf(" (the data file's columns: %s)", strings.Join(slices.Sorted(maps.Keys(sample.Data)), ", "))
		case strings.Contains(msg, "can't evaluate field"):
			msg += " (a step's text knows .Session, .Iteration and .Data.<column>)"
		}
		d.errAt(n, "%s: %s", field, msg)
		return nil, ""
	}
	return t, b.String()
}

var templatePrefixRE = regexp.MustCompile(`^template: [^:]*(:\d+)*: `)

// templateMsg drops the "template: NAME:LINE:COL: " prefix of a template error.
func templateMsg(err error) string {
	return templatePrefixRE.ReplaceAllString(err.Error(), "")
}

// limitWriter fails after n bytes, so a template cannot fill memory.
type limitWriter struct {
	w io.Writer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if len(p) > l.n {
		return 0, errors.New("renders to more than 1 MiB")
	}
	l.n -= len(p)
	return l.w.Write(p)
}

var scenarioKeys = []string{"name", "target", "sessions", "ramp_up", "duration", "iterations", "think_time", "screenshots", "data", "browser", "steps"}

func (d *decoder) scenario(data []byte, dir string) *Scenario {
	// Duplicate keys are found by the walk, so that all are reported.
	f, err := parser.ParseBytes(data, 0, parser.AllowDuplicateMapKey())
	if err != nil {
		d.yamlErr(err)
		return nil
	}
	var body ast.Node
	for _, doc := range f.Docs {
		if doc == nil || doc.Body == nil {
			continue
		}
		if body != nil {
			d.errAt(doc.Body, "one scenario per file")
			return nil
		}
		body = doc.Body
	}
	if body == nil {
		d.errAt(nil, "the file is empty; a scenario needs at least name, target and steps")
		return nil
	}
	sc := &Scenario{Sessions: 1}
	var steps, durationKey, iterationsKey ast.Node
	seen := map[string]bool{}
	ok := d.fields(body, "scenario", scenarioKeys, func(k string, v, kn ast.Node) {
		seen[k] = true
		switch k {
		case "name":
			if s, ok := d.str(v, "name"); ok && strings.TrimSpace(s) == "" {
				d.errAt(v, "name: must not be empty")
			} else {
				sc.Name = s
			}
		case "target":
			s, ok := d.str(v, "target")
			if !ok {
				return
			}
			if u, err := url.Parse(s); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				d.errAt(v, "target %q: want an http or https URL such as http://10.77.0.1:3000", s)
			} else {
				sc.Target = u
			}
		case "sessions":
			sc.Sessions, _ = d.int(v, "sessions", 1, maxSessions)
		case "ramp_up":
			sc.RampUp, _ = d.duration(v, "ramp_up", true)
		case "duration":
			durationKey = kn
			sc.Duration, _ = d.duration(v, "duration", false)
		case "iterations":
			iterationsKey = kn
			sc.Iterations, _ = d.int(v, "iterations", 1, 1<<31-1)
		case "think_time":
			sc.ThinkTime, _ = d.duration(v, "think_time", true)
		case "screenshots":
			sc.Screenshots = d.bool(v, "screenshots")
		case "data":
			if s, ok := d.str(v, "data"); ok {
				sc.Data = d.dataFile(v, dir, s)
			}
		case "browser":
			sc.Browser = d.browser(v)
		case "steps":
			steps = v
		}
	})
	if !ok {
		return nil
	}
	for _, k := range []string{"name", "target", "steps"} {
		if !seen[k] {
			d.errAt(body, "the scenario has no %s (%s)", k, map[string]string{
				"name": "name: chat", "target": "target: http://10.77.0.1:3000", "steps": "steps: [{navigate: /}]"}[k])
		}
	}
	switch {
	case durationKey != nil && iterationsKey != nil:
		d.errAt(iterationsKey, "duration and iterations exclude each other: give one (duration at line %d)", firstLine(durationKey))
	case durationKey == nil && iterationsKey == nil:
		sc.Iterations = 1
	}
	if steps != nil {
		sc.Steps = d.steps(steps, sc)
	}
	return sc
}

var browserKeys = []string{"block", "lean", "renderer_processes"}

// browser decodes the scenario's lean-rendering options.
func (d *decoder) browser(n ast.Node) BrowserOptions {
	var o BrowserOptions
	d.fields(n, "browser", browserKeys, func(k string, v, _ ast.Node) {
		switch k {
		case "block":
			seq, ok := profiles.Unwrap(v).(*ast.SequenceNode)
			if !ok {
				d.errAt(v, "browser.block: want a list of %s, got %s", strings.Join(blockable, ", "), profiles.NodeKind(v))
				return
			}
			seen := map[string]bool{}
			for _, item := range seq.Values {
				s, ok := d.str(item, "browser.block")
				switch {
				case !ok:
				case !slices.Contains(blockable, s):
					d.errAt(item, "browser.block: unknown resource type %q (known: %s)", s, strings.Join(blockable, ", "))
				case seen[s]:
					d.errAt(item, "browser.block: %s is listed twice", s)
				default:
					seen[s] = true
					o.Block = append(o.Block, s)
				}
			}
		case "lean":
			o.Lean = d.bool(v, "browser.lean")
		case "renderer_processes":
			o.RendererProcesses, _ = d.int(v, "browser.renderer_processes", 1, 1000)
		}
	})
	return o
}

func firstLine(n ast.Node) int {
	l, _ := profiles.NodePos(n)
	return l
}

func (d *decoder) steps(n ast.Node, sc *Scenario) []Step {
	seq, ok := profiles.Unwrap(n).(*ast.SequenceNode)
	if !ok {
		d.errAt(n, "steps: want a list of steps, got %s", profiles.NodeKind(n))
		return nil
	}
	if len(seq.Values) == 0 {
		d.errAt(n, "the scenario has no steps")
		return nil
	}
	sample := SessionData{Session: 1, Iteration: 1, Data: map[string]string{}}
	if len(sc.Data) > 0 {
		sample.Data = sc.Data[0]
	}
	var out []Step
	named := map[string]ast.Node{} // explicit names
	for i, item := range seq.Values {
		st, nameNode, ok := d.step(item, i, sc, sample)
		if !ok {
			continue
		}
		if nameNode != nil {
			if prev, dup := named[st.Name]; dup {
				d.errAt(nameNode, "step name %q is used at line %d too; names are the report's rows", st.Name, firstLine(prev))
			}
			named[st.Name] = nameNode
		}
		out = append(out, st)
	}
	// Steps named after their action may repeat (two clicks on the same
	// button): each keeps a row of its own, numbered from the second on.
	used := map[string]bool{}
	for _, st := range out {
		used[st.Name] = used[st.Name] || st.named
	}
	for i := range out {
		if out[i].named {
			continue
		}
		name := out[i].Name
		for k := 2; used[name]; k++ {
			name = fmt.Sprintf("%s (%d)", out[i].Name, k)
		}
		out[i].Name, used[name] = name, true
	}
	return out
}

var stepKeys = []string{"name", "timeout", ActNavigate, ActClick, ActType, ActWaitFor, ActSleep, ActAssert, ActJS, ActWSMessages}

// step decodes one step; nameNode is its explicit name's node, if any.
func (d *decoder) step(n ast.Node, i int, sc *Scenario, sample SessionData) (st Step, nameNode ast.Node, ok bool) {
	before := len(d.errs)
	what := fmt.Sprintf("steps[%d]", i)
	var actions []string
	var actionKey ast.Node
	var raw string
	var timeoutNode, wsTimeoutNode ast.Node
	isMapping := d.fields(n, what, stepKeys, func(k string, v, kn ast.Node) {
		switch k {
		case "name":
			if s, ok := d.str(v, "name"); ok {
				if strings.TrimSpace(s) == "" {
					d.errAt(v, "name: must not be empty")
					return
				}
				st.Name, st.named, nameNode = s, true, v
			}
			return
		case "timeout":
			timeout, _ := d.duration(v, "timeout", false)
			st.Timeout = cmp.Or(st.Timeout, timeout) // ws_messages.timeout wins
			timeoutNode = kn
			return
		}
		actions = append(actions, k)
		if actionKey == nil {
			actionKey = kn
		}
		st.Action = k
		switch k {
		case ActNavigate:
			if s, ok := d.str(v, k); ok {
				raw = s
				var target string
				if st.Text, target = d.template(v, k, s, sample); st.Text != nil {
					d.checkTarget(v, sc, target)
				}
			}
		case ActClick:
			st.Selector = d.selector(v, k)
		case ActType:
			d.fields(v, k, []string{"selector", "text"}, func(k2 string, v2, _ ast.Node) {
				switch k2 {
				case "selector":
					st.Selector = d.selector(v2, "type.selector")
				case "text":
					if s, ok := d.str(v2, "type.text"); ok {
						st.Text, _ = d.template(v2, "type.text", s, sample)
					}
				}
			})
			if (st.Selector == "" || st.Text == nil) && len(d.errs) == before {
				d.errAt(v, "type: give {selector: \"#user\", text: \"user{{.Session}}\"}")
			}
		case ActWaitFor:
			if _, isMap := profiles.MappingValues(v); !isMap {
				st.Selector = d.selector(v, k)
				return
			}
			d.fields(v, k, []string{"selector", "text"}, func(k2 string, v2, _ ast.Node) {
				switch k2 {
				case "selector":
					st.Selector = d.selector(v2, "wait_for.selector")
				case "text":
					if s, ok := d.str(v2, "wait_for.text"); ok {
						raw = s
						st.Text, _ = d.template(v2, "wait_for.text", s, sample)
					}
				}
			})
			if (st.Selector == "") == (st.Text == nil) && len(d.errs) == before {
				d.errAt(v, "wait_for: give a selector or {text: …}, one of them")
			}
		case ActSleep:
			st.Sleep, _ = d.duration(v, k, false)
		case ActAssert:
			d.fields(v, k, []string{"text", "status"}, func(k2 string, v2, _ ast.Node) {
				switch k2 {
				case "text":
					if s, ok := d.str(v2, "assert.text"); ok {
						raw = s
						st.Text, _ = d.template(v2, "assert.text", s, sample)
					}
				case "status":
					st.Status, _ = d.int(v2, "assert.status", 100, 599)
				}
			})
			if st.Text == nil && st.Status == 0 && len(d.errs) == before {
				d.errAt(v, "assert: give {text: …} (on the page) or {status: 200} (of the last navigation)")
			}
		case ActJS:
			if s, ok := d.str(v, k); ok {
				if strings.TrimSpace(s) == "" {
					d.errAt(v, "js: give a script; false or an exception fails the step")
					return
				}
				st.Text, _ = d.template(v, k, s, sample)
			}
		case ActWSMessages:
			var sawCount bool
			d.fields(v, k, []string{"count", "timeout"}, func(k2 string, v2, kn2 ast.Node) {
				switch k2 {
				case "count":
					st.Count, sawCount = d.int(v2, "ws_messages.count", 1, 1<<31-1)
				case "timeout":
					wsTimeout, _ := d.duration(v2, "ws_messages.timeout", false)
					st.Timeout = cmp.Or(wsTimeout, st.Timeout)
					wsTimeoutNode = kn2
				}
			})
			if !sawCount && len(d.errs) == before {
				d.errAt(v, "ws_messages: give {count: 10, timeout: 10s}")
			}
		}
	})
	if !isMapping {
		return st, nil, false
	}
	if timeoutNode != nil && wsTimeoutNode != nil {
		d.errAt(wsTimeoutNode, "ws_messages.timeout and the step's timeout (line %d) are the same thing: give one", firstLine(timeoutNode))
	}
	switch len(actions) {
	case 0:
		d.errAt(n, "step %d has no action: give one of %s", i+1, strings.Join(stepKeys[2:], ", "))
	case 1:
	default:
		d.errAt(actionKey, "step %d has %d actions (%s): one per step", i+1, len(actions), strings.Join(actions, ", "))
	}
	if len(d.errs) != before {
		return st, nil, false
	}
	if st.Timeout == 0 {
		st.Timeout = DefaultStepTimeout
	}
	if st.Name == "" {
		st.Name = defaultName(st, raw)
	}
	return st, nameNode, true
}

// selector decodes a CSS selector.
func (d *decoder) selector(n ast.Node, field string) string {
	s, ok := d.str(n, field)
	if ok && strings.TrimSpace(s) == "" {
		d.errAt(n, "%s: give a CSS selector such as \"#login\"", field)
		return ""
	}
	return s
}

// checkTarget checks a rendered navigate target: a path under the
// scenario's target, or an absolute http(s) URL.
func (d *decoder) checkTarget(n ast.Node, sc *Scenario, target string) {
	u, err := url.Parse(target)
	switch {
	case target == "":
		d.errAt(n, "navigate: give a path (/) or a URL")
	case err != nil:
		d.errAt(n, "navigate %q: %v", target, errors.Unwrap(err))
	case u.Scheme != "" && u.Scheme != "http" && u.Scheme != "https":
		d.errAt(n, "navigate %q: want a path or an http(s) URL", target)
	case u.Scheme != "" && u.Host == "":
		d.errAt(n, "navigate %q: the URL has no host", target)
	}
}

// dataFile reads a CSV file with a header row: one row per session in
// turn, its columns as .Data.<column>. Its own errors are located in it.
func (d *decoder) dataFile(n ast.Node, dir, name string) []map[string]string {
	path := name
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, name)
	}
	f, err := os.Open(path)
	if err != nil {
		d.errAt(n, "data: %v", err)
		return nil
	}
	defer f.Close()
	r := csv.NewReader(io.LimitReader(f, 256<<20))
	header, err := r.Read()
	if err != nil {
		d.csvErr(n, path, err, "want a header row of column names and data rows")
		return nil
	}
	seen := map[string]bool{}
	for i, h := range header {
		switch {
		case h == "":
			d.errs = append(d.errs, &profiles.Error{Path: path, Line: 1, Col: i + 1, Msg: fmt.Sprintf("column %d has no name", i+1)})
		case seen[h]:
			d.errs = append(d.errs, &profiles.Error{Path: path, Line: 1, Msg: fmt.Sprintf("column %q is named twice", h)})
		}
		seen[h] = true
	}
	var rows []map[string]string
	for len(rows) < maxDataRows {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			d.csvErr(n, path, err, "")
			return nil
		}
		row := make(map[string]string, len(header))
		for i, h := range header {
			row[h] = rec[i]
		}
		rows = append(rows, row)
	}
	if len(rows) == 0 {
		d.errAt(n, "data: %s has no data rows under its header", name)
	}
	return rows
}

func (d *decoder) csvErr(n ast.Node, path string, err error, hint string) {
	var pe *csv.ParseError
	switch {
	case errors.As(err, &pe):
		d.errs = append(d.errs, &profiles.Error{Path: path, Line: pe.Line, Col: pe.Column, Msg: pe.Err.Error()})
	case err == io.EOF:
		d.errAt(n, "data: %s is empty; %s", filepath.Base(path), hint)
	default:
		d.errAt(n, "data: %v", err)
	}
}
