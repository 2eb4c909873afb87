// Package load drives real browsers (headless Chromium over the DevTools
// protocol) through a scenario written in YAML, aggregates what they
// measure into mergeable histograms and time buckets, and writes reports
// (JSON, CSV, self-contained HTML) of the kind performance engineers know
// from JMeter and Locust.
package load

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/bootfleet/bootfleet/profiles"
)

// Scenario is a load test: who (sessions, ramp-up), for how long, and the
// steps each session repeats.
type Scenario struct {
	Name       string
	Target     *url.URL
	Sessions   int
	RampUp     time.Duration
	Duration   time.Duration // 0 when Iterations is set
	Iterations int           // per session; 0 when Duration is set
	ThinkTime  time.Duration
	// Screenshots saves a PNG of the page when a step fails.
	Screenshots bool
	Steps       []Step
	// Data holds the rows of the data file, one per session in turn
	// (session n gets row (n-1) mod len).
	Data []map[string]string
}

// Action kinds of a step.
const (
	ActNavigate   = "navigate"
	ActClick      = "click"
	ActType       = "type"
	ActWaitFor    = "wait_for"
	ActSleep      = "sleep"
	ActAssert     = "assert"
	ActJS         = "js"
	ActWSMessages = "ws_messages"
)

// Step is one action; its Name is the report's row.
type Step struct {
	Name     string
	Action   string
	Timeout  time.Duration
	Selector string             // click, type, wait_for (selector form)
	Text     *template.Template // navigate (path or URL), type, wait_for/assert (text form), js
	Status   int                // assert status
	Count    int                // ws_messages
	Sleep    time.Duration
}

// DefaultStepTimeout bounds a step without its own timeout.
const DefaultStepTimeout = 30 * time.Second

// SessionData is what step templates are executed with.
type SessionData struct {
	Session   int // from 1
	Iteration int // from 1
	Data      map[string]string
}

// Render executes a step's text for one session.
func (s Step) Render(d SessionData) (string, error) {
	if s.Text == nil {
		return "", nil
	}
	var b bytes.Buffer
	if err := s.Text.Execute(&b, d); err != nil {
		return "", fmt.Errorf("step %s: %w", s.Name, err)
	}
	return b.String(), nil
}

type scenarioYAML struct {
	Name        string     `yaml:"name"`
	Target      string     `yaml:"target"`
	Sessions    int        `yaml:"sessions"`
	RampUp      string     `yaml:"ramp_up"`
	Duration    string     `yaml:"duration"`
	Iterations  int        `yaml:"iterations"`
	ThinkTime   string     `yaml:"think_time"`
	Screenshots bool       `yaml:"screenshots"`
	Data        string     `yaml:"data"`
	Steps       []stepYAML `yaml:"steps"`
}

type stepYAML struct {
	Name     string    `yaml:"name"`
	Timeout  string    `yaml:"timeout"`
	Navigate *string   `yaml:"navigate"`
	Click    *string   `yaml:"click"`
	Type     *typeYAML `yaml:"type"`
	WaitFor  any       `yaml:"wait_for"`
	Sleep    *string   `yaml:"sleep"`
	Assert   *struct {
		Text   string `yaml:"text"`
		Status int    `yaml:"status"`
	} `yaml:"assert"`
	JS         *string `yaml:"js"`
	WSMessages *struct {
		Count   int    `yaml:"count"`
		Timeout string `yaml:"timeout"`
	} `yaml:"ws_messages"`
}

type typeYAML struct {
	Selector string `yaml:"selector"`
	Text     string `yaml:"text"`
}

// LoadFile reads and checks a scenario file; data files are found beside it.
func LoadFile(path string) (*Scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("scenario: %w", err)
	}
	return Parse(path, b, filepath.Dir(path))
}

// Parse checks a scenario and reports every problem at once, each as
// path:line:col. dir is where a data file is looked for.
func Parse(file string, data []byte, dir string) (*Scenario, error) {
	var errs profiles.ErrorList
	addAt := func(n ast.Node, format string, args ...any) {
		errs = append(errs, profiles.ErrorAt(file, n, format, args...))
	}
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		errs = append(errs, profiles.YAMLError(file, err))
		return nil, errs.Err()
	}
	var body ast.Node
	for _, d := range f.Docs {
		if d != nil && d.Body != nil {
			if body != nil {
				addAt(d.Body, "one scenario per file")
				return nil, errs.Err()
			}
			body = d.Body
		}
	}
	if body == nil {
		addAt(nil, "the file is empty; a scenario needs at least name, target and steps")
		return nil, errs.Err()
	}
	var raw scenarioYAML
	if err := yaml.NodeToValue(body, &raw, yaml.DisallowUnknownField(), yaml.Strict()); err != nil {
		errs = append(errs, profiles.YAMLError(file, err))
		return nil, errs.Err()
	}
	lookup := func(p string) (ast.Node, bool) {
		if yp, err := yaml.PathString(p); err == nil {
			if n, err := yp.FilterNode(body); err == nil && n != nil {
				return n, true
			}
		}
		return body, false
	}
	at := func(p string) ast.Node { n, _ := lookup(p); return n }
	dur := func(p, s string, what string) time.Duration {
		if s == "" {
			return 0
		}
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			addAt(at(p), "%s %q: want a duration such as 500ms, 30s or 5m", what, s)
			return 0
		}
		return d
	}
	sc := &Scenario{Name: raw.Name, Sessions: raw.Sessions, Iterations: raw.Iterations, Screenshots: raw.Screenshots}
	if raw.Name == "" {
		addAt(body, "the scenario has no name (name: chat)")
	}
	if raw.Target == "" {
		addAt(body, "the scenario has no target (target: http://10.77.0.1:3000)")
	} else if u, err := url.Parse(raw.Target); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		addAt(at("$.target"), "target %q: want an http or https URL", raw.Target)
	} else {
		sc.Target = u
	}
	if _, set := lookup("$.sessions"); !set {
		sc.Sessions = 1
	} else if raw.Sessions < 1 || raw.Sessions > 100000 {
		addAt(at("$.sessions"), "sessions: %d: want 1 to 100000", raw.Sessions)
	}
	sc.RampUp = dur("$.ramp_up", raw.RampUp, "ramp_up")
	sc.Duration = dur("$.duration", raw.Duration, "duration")
	sc.ThinkTime = dur("$.think_time", raw.ThinkTime, "think_time")
	switch {
	case raw.Duration != "" && raw.Iterations != 0:
		addAt(at("$.iterations"), "duration and iterations exclude each other: give one")
	case raw.Duration == "" && raw.Iterations == 0:
		sc.Iterations = 1
	case raw.Iterations < 0:
		addAt(at("$.iterations"), "iterations: %d is negative", raw.Iterations)
	}
	if raw.Data != "" {
		rows, err := readCSV(filepath.Join(dir, raw.Data))
		if err != nil {
			addAt(at("$.data"), "data: %v", err)
		}
		sc.Data = rows
	}
	if len(raw.Steps) == 0 {
		addAt(at("$.steps"), "the scenario has no steps")
	}
	names := map[string]int{}
	for i, rs := range raw.Steps {
		p := fmt.Sprintf("$.steps[%d]", i)
		st, ok := parseStep(rs, p, at, addAt, dur)
		if !ok {
			continue
		}
		if prev, dup := names[st.Name]; dup && rs.Name != "" {
			addAt(at(p+".name"), "step name %q is used by step %d too; names are the report's rows", st.Name, prev+1)
		}
		names[st.Name] = i
		sc.Steps = append(sc.Steps, st)
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return sc, nil
}

func parseStep(rs stepYAML, p string, at func(string) ast.Node, addAt func(ast.Node, string, ...any), dur func(p, s, what string) time.Duration) (Step, bool) {
	st := Step{Name: rs.Name, Timeout: dur(p+".timeout", rs.Timeout, "timeout")}
	if st.Timeout == 0 {
		st.Timeout = DefaultStepTimeout
	}
	var actions []string
	tmpl := func(field, text string) *template.Template {
		t, err := template.New(field).Option("missingkey=error").Parse(text)
		if err != nil {
			addAt(at(p+"."+field), "%s: %v", field, err)
			return nil
		}
		return t
	}
	if rs.Navigate != nil {
		actions = append(actions, ActNavigate)
		st.Action, st.Text = ActNavigate, tmpl("navigate", *rs.Navigate)
		if *rs.Navigate == "" {
			addAt(at(p+".navigate"), "navigate: give a path (/) or a URL")
		}
	}
	if rs.Click != nil {
		actions = append(actions, ActClick)
		st.Action, st.Selector = ActClick, *rs.Click
		if *rs.Click == "" {
			addAt(at(p+".click"), "click: give a CSS selector")
		}
	}
	if rs.Type != nil {
		actions = append(actions, ActType)
		st.Action, st.Selector, st.Text = ActType, rs.Type.Selector, tmpl("type", rs.Type.Text)
		if rs.Type.Selector == "" {
			addAt(at(p+".type"), "type: give {selector: \"#user\", text: \"user{{.Session}}\"}")
		}
	}
	if rs.WaitFor != nil {
		actions = append(actions, ActWaitFor)
		st.Action = ActWaitFor
		switch v := rs.WaitFor.(type) {
		case string:
			st.Selector = v
		case map[string]any:
			for k, val := range v {
				s, _ := val.(string)
				switch k {
				case "selector":
					st.Selector = s
				case "text":
					st.Text = tmpl("wait_for", s)
				default:
					addAt(at(p+".wait_for"), "wait_for: unknown key %q (want selector or text)", k)
				}
			}
		default:
			addAt(at(p+".wait_for"), "wait_for: want a selector, or {selector: …} or {text: …}")
		}
		if st.Selector == "" && st.Text == nil {
			addAt(at(p+".wait_for"), "wait_for: give a selector or {text: …}")
		}
	}
	if rs.Sleep != nil {
		actions = append(actions, ActSleep)
		st.Action, st.Sleep = ActSleep, dur(p+".sleep", *rs.Sleep, "sleep")
	}
	if rs.Assert != nil {
		actions = append(actions, ActAssert)
		st.Action, st.Status = ActAssert, rs.Assert.Status
		if rs.Assert.Text != "" {
			st.Text = tmpl("assert", rs.Assert.Text)
		}
		if rs.Assert.Text == "" && rs.Assert.Status == 0 {
			addAt(at(p+".assert"), "assert: give {text: …} (on the page) or {status: 200} (of the last navigation)")
		}
	}
	if rs.JS != nil {
		actions = append(actions, ActJS)
		st.Action, st.Text = ActJS, tmpl("js", *rs.JS)
	}
	if rs.WSMessages != nil {
		actions = append(actions, ActWSMessages)
		st.Action, st.Count = ActWSMessages, rs.WSMessages.Count
		if rs.WSMessages.Timeout != "" {
			st.Timeout = dur(p+".ws_messages.timeout", rs.WSMessages.Timeout, "timeout")
		}
		if st.Count < 1 {
			addAt(at(p+".ws_messages"), "ws_messages: count must be at least 1")
		}
	}
	switch len(actions) {
	case 0:
		idx, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(p, "$.steps["), "]"))
		addAt(at(p), "step %d has no action: give one of navigate, click, type, wait_for, sleep, assert, js, ws_messages", idx+1)
		return st, false
	case 1:
	default:
		addAt(at(p), "step has %d actions (%s): one per step", len(actions), strings.Join(actions, ", "))
		return st, false
	}
	if st.Name == "" {
		st.Name = defaultName(st, rs)
	}
	return st, true
}

// defaultName names a step from its action, e.g. "click #login".
func defaultName(st Step, rs stepYAML) string {
	switch st.Action {
	case ActNavigate:
		return "navigate " + *rs.Navigate
	case ActClick, ActType:
		return st.Action + " " + st.Selector
	case ActWaitFor:
		if st.Selector != "" {
			return "wait_for " + st.Selector
		}
		return "wait_for text"
	case ActSleep:
		return "sleep " + st.Sleep.String()
	case ActAssert:
		if st.Status != 0 {
			return fmt.Sprintf("assert status %d", st.Status)
		}
		return "assert text"
	case ActJS:
		return "js"
	case ActWSMessages:
		return fmt.Sprintf("ws_messages %d", st.Count)
	}
	return st.Action
}

func readCSV(path string) ([]map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(recs) < 2 {
		return nil, fmt.Errorf("%s: want a header row and at least one data row", path)
	}
	var rows []map[string]string
	for _, r := range recs[1:] {
		row := map[string]string{}
		for i, h := range recs[0] {
			if i < len(r) {
				row[h] = r[i]
			}
		}
		rows = append(rows, row)
	}
	return rows, nil
}
