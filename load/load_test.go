package load

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bootfleet/bootfleet/load/chatapp"
)

// chatApp starts the test web app (load/chatapp) on loopback.
func chatApp(t *testing.T) *httptest.Server {
	srv, _ := countingChatApp(t)
	return srv
}

// countingChatApp starts the test web app and returns what its server
// side counts.
func countingChatApp(t *testing.T) (*httptest.Server, *chatapp.Counters) {
	t.Helper()
	var c chatapp.Counters
	srv := httptest.NewServer(chatapp.Handler(&c, 0))
	t.Cleanup(srv.Close)
	return srv, &c
}

func needBrowser(t *testing.T) string {
	t.Helper()
	exe, err := FindBrowser("")
	if err != nil {
		t.Fatalf("%v: `make test` installs chromium-headless-shell and chromium", err)
	}
	return exe
}

// browserDir returns a directory for a run's browsers (Options.TempDir).
// Whatever browser process still uses it when the test ends, passed or
// failed, is killed, and the test fails: Run must end its browsers itself.
func browserDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() {
		if pids := browserPIDs(dir); len(pids) > 0 {
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			t.Errorf("%d browser processes outlived the run: %v", len(pids), pids)
		}
	})
	return dir
}

// browserPIDs lists the processes whose command line names dir.
func browserPIDs(dir string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && strings.Contains(string(b), dir) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestRunChatScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	needBrowser(t)
	app := chatApp(t)
	sc, err := Parse("chat.yaml", []byte(`name: chat
target: `+app.URL+`
sessions: 3
ramp_up: 1s
iterations: 2
steps:
  - name: open
    navigate: /
  - name: login
    type: {selector: "#user", text: "user{{.Session}}"}
  - click: "#login"
  - wait_for: ".room.ready"
  - assert: {text: "Welcome user"}
  - name: messages
    ws_messages: {count: 5, timeout: 10s}
`), ".")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	agg, err := Run(ctx, sc, Options{SessionsPerBrowser: 2, TempDir: browserDir(t)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := agg.Report(sc, "test", time.Now())
	byName := r.StepsByName()
	for _, name := range []string{"open", "login", "click #login", "wait_for .room.ready", `assert text "Welcome user"`, "messages"} {
		s, ok := byName[name]
		if !ok {
			t.Fatalf("no step %q in the report: %+v", name, r.Steps)
		}
		if s.Count != 6 || s.Failures != 0 {
			t.Errorf("step %s: count %d failures %d (%v), want 6 runs (3 sessions × 2), no failures", name, s.Count, s.Failures, s.Reasons)
		}
		if s.P95Ms < s.P50Ms || s.MaxMs < s.P99Ms || s.MinMs > s.AvgMs {
			t.Errorf("step %s: percentiles out of order: %+v", name, s)
		}
	}
	if r.WSReceived < 30 || r.WSSent < 6 {
		t.Errorf("websocket frames: received %d (want ≥ 30), sent %d (want ≥ 6)", r.WSReceived, r.WSSent)
	}
	if r.Sessions != 3 || r.Iterations != 6 || r.Requests == 0 || r.Bytes == 0 {
		t.Errorf("report: sessions %d iterations %d requests %d bytes %d", r.Sessions, r.Iterations, r.Requests, r.Bytes)
	}
	if v := r.WebVitals["ttfb"]; v.Count != 6 || v.P50 <= 0 {
		t.Errorf("TTFB: %+v", v)
	}
	if v := r.WebVitals["fcp"]; v.Count == 0 {
		t.Errorf("FCP never measured: %+v", r.WebVitals)
	}

	dir := t.TempDir()
	if err := r.Write(dir); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Steps []map[string]any `json:"steps"`
	}
	b, _ := os.ReadFile(filepath.Join(dir, "report.json"))
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"name", "count", "failures", "avg_ms", "min_ms", "max_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms"} {
		if _, ok := back.Steps[0][field]; !ok {
			t.Errorf("report.json steps lack %q (the contract)", field)
		}
	}
	csvData, _ := os.ReadFile(filepath.Join(dir, "report.csv"))
	if !strings.HasPrefix(string(csvData), "name,count,failures,") || !strings.Contains(string(csvData), "\nmessages,6,0,") {
		t.Errorf("report.csv:\n%s", csvData)
	}
	html, _ := os.ReadFile(filepath.Join(dir, "report.html"))
	if !strings.Contains(string(html), "<polyline points=") || strings.Contains(string(html), "http://") && strings.Contains(string(html), "<script src") {
		t.Errorf("report.html is not a self-contained page with charts")
	}
}

// A failing check counts as a failure with its reason, ends the
// iteration, and counts toward the step's runs; a 5xx page fails navigate
// with the status.
func TestRunFailures(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	needBrowser(t)
	app := chatApp(t)
	sc, err := Parse("fail.yaml", []byte(`name: failing
target: `+app.URL+`
sessions: 2
iterations: 2
screenshots: true
steps:
  - name: home
    navigate: /
  - name: wrong text
    assert: {text: "no such text"}
  - name: never reached
    navigate: /
`), ".")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	agg, err := Run(ctx, sc, Options{Out: out, TempDir: browserDir(t)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := agg.Report(sc, "test", time.Now())
	if s := r.Steps[1]; s.Count != 4 || s.Failures != 4 || s.Reasons[`text "no such text" not on the page`] != 4 {
		t.Errorf("failing assert: %+v", s)
	}
	if s := r.Steps[2]; s.Count != 0 {
		t.Errorf("a step after a failure ran: %+v", s)
	}
	if shots, _ := filepath.Glob(filepath.Join(out, "screenshots", "*.png")); len(shots) != 4 {
		t.Errorf("%d screenshots of failures, want 4", len(shots))
	}

	sc2, err := Parse("broken.yaml", []byte("name: broken\ntarget: "+app.URL+"\nsteps:\n  - navigate: /broken\n"), ".")
	if err != nil {
		t.Fatal(err)
	}
	agg, err = Run(ctx, sc2, Options{TempDir: browserDir(t)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r = agg.Report(sc2, "test", time.Now())
	if s := r.Steps[0]; s.Name != "navigate /broken" || s.Failures != 1 || s.Reasons["HTTP 500"] != 1 {
		t.Errorf("5xx page: %+v", s)
	}
	if r.HTTPStatuses["500"] != 1 {
		t.Errorf("HTTP responses: %v, want one 500", r.HTTPStatuses)
	}
}

// TestRunDuration runs sessions for a time, not a count: they ramp up,
// think, and start over after a failed step. A js step that is false on
// odd iterations fails every other iteration; an exception fails it too.
func TestRunDuration(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	needBrowser(t)
	app := chatApp(t)
	sc, err := Parse("duration.yaml", []byte(`name: duration
target: `+app.URL+`
sessions: 3
ramp_up: 1s
duration: 8s
think_time: 50ms
steps:
  - name: open
    navigate: /
  - type: {selector: "#user", text: "user{{.Session}}"}
  - click: "#login"
  - wait_for: {text: "Welcome user{{.Session}}"}
  - name: even
    js: "{{.Iteration}} % 2 === 0"
  - name: ticks
    ws_messages: {count: 2, timeout: 5s}
  - name: throws
    js: "if ({{.Iteration}} === 2) throw new Error('boom'); true"
`), ".")
	if err != nil {
		t.Fatal(err)
	}
	var lives []Live
	began := time.Now()
	agg, err := Run(context.Background(), sc, Options{SessionsPerBrowser: 2, TempDir: browserDir(t)}, func(l Live) { lives = append(lives, l) })
	if err != nil {
		t.Fatal(err)
	}
	// 8 s, not less: on a loaded machine (CI runs packages side by side) a
	// second browser took over 4 s to start, and its session never ran.
	if took := time.Since(began); took < 8*time.Second || took > 30*time.Second {
		t.Errorf("an 8 s run took %s", took)
	}
	r := agg.Report(sc, "test", time.Now())
	by := r.StepsByName()
	open, even, ticks, throws := by["open"], by["even"], by["ticks"], by["throws"]
	if open.Count < 6 || open.Failures != 0 {
		t.Errorf("open: %+v, want ≥ 2 iterations in each of 3 sessions", open)
	}
	// Every iteration starts with open, and a failed step ends it: the
	// next step runs only after a success.
	if even.Failures == 0 || even.Reasons["js returned false"] != even.Failures {
		t.Errorf("even: %+v, want failures with reason js returned false", even)
	}
	// (Each session's last run of a step may be cut by the end of the run.)
	if ok := even.Count - even.Failures; ticks.Count > ok || ticks.Count < ok-3 {
		t.Errorf("ticks ran %d times after %d successes of even", ticks.Count, ok)
	}
	if throws.Failures == 0 || !strings.Contains(fmt.Sprint(throws.Reasons), "Error: boom at <anonymous>") {
		t.Errorf("throws: %+v, want the exception as the reason", throws)
	}
	if open.Requests == 0 || open.Bytes == 0 {
		t.Errorf("open loaded %d requests, %d bytes", open.Requests, open.Bytes)
	}
	if r.Sessions != 3 || r.HTTPStatuses["200"] < open.Count {
		t.Errorf("sessions %d, HTTP responses %v", r.Sessions, r.HTTPStatuses)
	}
	// Ramp-up: the first second has fewer sessions than the peak; the
	// progress callback ran about once a second.
	if len(r.Timeline) < 4 || r.Timeline[0].Sessions >= 3 {
		t.Errorf("timeline: %+v", r.Timeline)
	}
	if len(lives) < 3 || lives[len(lives)-1].Steps == 0 {
		t.Errorf("progress: %+v", lives)
	}
}

// TestRunBrowserDies kills a browser in the middle of a run: its sessions
// go on in a new one.
func TestRunBrowserDies(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	needBrowser(t)
	app := chatApp(t)
	sc, err := Parse("dies.yaml", []byte(`name: dies
target: `+app.URL+`
sessions: 2
duration: 10s
steps:
  - navigate: /
  - sleep: 100ms
`), ".")
	if err != nil {
		t.Fatal(err)
	}
	dir := browserDir(t)
	// Kill the browser once its sessions have run steps (the live callback
	// comes each second), not at a fixed time: on a loaded machine a
	// browser took 4 s to start.
	var once sync.Once
	kill := func(l Live) {
		if l.Steps == 0 {
			return
		}
		once.Do(func() {
			// The browser's main process leads its process group.
			for _, pid := range browserPIDs(dir) {
				if pgid, err := syscall.Getpgid(pid); err == nil && pgid == pid {
					_ = syscall.Kill(-pid, syscall.SIGKILL)
				}
			}
		})
	}
	agg, err := Run(context.Background(), sc, Options{TempDir: dir}, kill)
	if err != nil {
		t.Fatal(err)
	}
	r := agg.Report(sc, "test", time.Now())
	if r.LostSessions == 0 {
		t.Errorf("no session lost its browser: %+v", r)
	}
	last := r.Timeline[len(r.Timeline)-2]
	if last.Steps == 0 || last.Sessions != 2 {
		t.Errorf("no sessions running in a new browser near the end: %+v", r.Timeline)
	}
}
