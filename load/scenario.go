// Package load drives real browsers (headless Chromium over the DevTools
// protocol) through a scenario written in YAML, aggregates what they
// measure into mergeable histograms and time buckets, and writes reports
// (JSON, CSV, self-contained HTML) of the kind performance engineers know
// from JMeter and Locust.
package load

import (
	"bytes"
	"fmt"
	"net/url"
	"strconv"
	"text/template"
	"time"
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

	named bool // Name was given, not made from the action
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

// defaultName names a step from its action, e.g. "click #login"; raw is
// the navigate target as written.
func defaultName(st Step, raw string) string {
	switch st.Action {
	case ActNavigate:
		return "navigate " + raw
	case ActClick, ActType:
		return st.Action + " " + st.Selector
	case ActWaitFor:
		if st.Selector != "" {
			return "wait_for " + st.Selector
		}
		return "wait_for text " + strconv.Quote(raw)
	case ActSleep:
		return "sleep " + st.Sleep.String()
	case ActAssert:
		if st.Status != 0 {
			return fmt.Sprintf("assert status %d", st.Status)
		}
		return "assert text " + strconv.Quote(raw)
	case ActJS:
		return "js"
	case ActWSMessages:
		return fmt.Sprintf("ws_messages %d", st.Count)
	}
	return st.Action
}
