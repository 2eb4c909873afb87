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
	// Browser is what the browser may leave out for this scenario.
	Browser BrowserOptions
}

// Resource types a scenario may block (browser: {block: [...]}).
var blockable = []string{"images", "fonts", "media", "stylesheets"}

// BrowserOptions are a scenario's lean-rendering options: work the browser
// skips because the scenario does not need it. Each changes what is
// measured, and the report says how (Effects).
type BrowserOptions struct {
	// Block lists resource types the browser refuses to load: images,
	// fonts, media, stylesheets.
	Block []string `json:"block,omitempty"`
	// Lean runs Chromium with flags that skip drawing no one sees: a small
	// window, no threaded animation, no checker-imaging, no smooth
	// scrolling, no LCD text.
	Lean bool `json:"lean,omitempty"`
	// RendererProcesses caps the renderer processes per browser
	// (--renderer-process-limit), so that sessions share renderers; 0
	// leaves Chromium's default (one per session's page).
	RendererProcesses int `json:"renderer_processes,omitempty"`
}

// Effects states, one line per option that is on, what it changes in
// what a run measures.
func (o BrowserOptions) Effects() []string {
	var out []string
	for _, b := range o.Block {
		switch b {
		case "images":
			out = append(out, "images blocked: no image requests reach the app (not in requests, bytes or its logs); LCP is a text element's, image decoding costs nothing")
		case "fonts":
			out = append(out, "fonts blocked: web fonts are not fetched, text draws in a local font; font requests are missing from requests and bytes")
		case "media":
			out = append(out, "media blocked: audio and video are not fetched or decoded")
		case "stylesheets":
			out = append(out, "stylesheets blocked: pages are unstyled; selectors that depend on CSS visibility (wait_for, click) may behave differently, layout shifts (CLS) are not the real page's")
		}
	}
	if o.Lean {
		out = append(out, "lean rendering: a 400x300 window and no threaded animation, checker-imaging, smooth scrolling or LCD text: less raster work per frame; FCP/LCP are of the small viewport, screenshots are 400x300")
	}
	if o.RendererProcesses > 0 {
		out = append(out, fmt.Sprintf("at most %d renderer processes per browser: sessions share renderers (and their main threads), so one session's JavaScript can delay another's; memory per session drops", o.RendererProcesses))
	}
	return out
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
