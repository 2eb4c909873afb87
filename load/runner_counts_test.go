package load

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunCountsMatchServer holds a report against what the app's own
// server counted: pages, images, websocket logins, and the endpoint that
// fails on purpose, whose step must show as failures with their reason.
func TestRunCountsMatchServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	needBrowser(t)
	app, seen := countingChatApp(t)
	sc, err := Parse("counts.yaml", []byte(`name: counts
target: `+app.URL+`
sessions: 2
iterations: 3
steps:
  - name: open
    navigate: /
  - type: {selector: "#user", text: "user{{.Session}}"}
  - click: "#login"
  - name: ready
    wait_for: ".room.ready"
  - name: messages
    ws_messages: {count: 3, timeout: 10s}
  - name: broken
    navigate: /broken
  - name: never
    navigate: /
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
	by := r.StepsByName()
	if got, want := by["open"].Count, seen.Pages.Load(); got != want || got != 6 {
		t.Errorf("open ran %d times, the server answered %d pages (want 6)", got, want)
	}
	if got, want := by["ready"].Count, seen.Hellos.Load(); got != want {
		t.Errorf("ready ran %d times, the server saw %d websocket logins", got, want)
	}
	if got, want := r.WSSent, seen.Hellos.Load(); got != want {
		t.Errorf("report: %d websocket messages sent, the server received %d", got, want)
	}
	if got, want := r.WSReceived, seen.WSSent.Load(); got > want || got < by["messages"].Count*3 {
		t.Errorf("report: %d websocket messages received, the server sent %d, messages ran %d times", got, want, by["messages"].Count)
	}
	b := by["broken"]
	if b.Count != seen.Broken.Load() || b.Failures != b.Count || b.Reasons["HTTP 500"] != b.Count || b.Count != 6 {
		t.Errorf("broken: %+v; the server failed %d requests on purpose (want 6, all failures with reason HTTP 500)", b, seen.Broken.Load())
	}
	if r.HTTPStatuses["500"] != seen.Broken.Load() {
		t.Errorf("HTTP responses %v, the server answered %d × 500", r.HTTPStatuses, seen.Broken.Load())
	}
	if got := r.HTTPStatuses["200"]; got != seen.Pages.Load()+seen.Images.Load() {
		t.Errorf("%d responses 200, the server answered %d pages and %d images", got, seen.Pages.Load(), seen.Images.Load())
	}
	if by["never"].Count != 0 {
		t.Errorf("a step after the failing one ran: %+v", by["never"])
	}
	if r.Generator.MaxPSSMiB <= 0 || r.Generator.MaxCPUPct <= 0 {
		t.Errorf("generator usage not measured: %+v", r.Generator)
	}
	if len(r.Effects) != 0 || r.BlockedRequests != 0 {
		t.Errorf("no browser options given, report says %v, %d blocked", r.Effects, r.BlockedRequests)
	}
}

// TestRunLeanBrowser runs with images blocked, lean flags and one
// renderer per browser: the app never sees an image request, the report
// counts the blocked ones and says what the options change.
func TestRunLeanBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	needBrowser(t)
	app, seen := countingChatApp(t)
	sc, err := Parse("lean.yaml", []byte(`name: lean
target: `+app.URL+`
sessions: 2
iterations: 2
browser:
  block: [images, fonts]
  lean: true
  renderer_processes: 1
steps:
  - name: open
    navigate: /
  - type: {selector: "#user", text: "user{{.Session}}"}
  - click: "#login"
  - name: messages
    ws_messages: {count: 3, timeout: 10s}
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
	if r.Total.Failures != 0 || r.Steps[0].Count != 4 {
		t.Errorf("lean run: %+v", r.Steps)
	}
	if seen.Images.Load() != 0 || seen.Pages.Load() != 4 {
		t.Errorf("server saw %d images and %d pages, want 0 and 4", seen.Images.Load(), seen.Pages.Load())
	}
	if r.BlockedRequests != 4 {
		t.Errorf("%d requests blocked, want the 4 images", r.BlockedRequests)
	}
	if len(r.Effects) != 4 || !strings.Contains(strings.Join(r.Effects, "\n"), "images blocked") {
		t.Errorf("effects: %q", r.Effects)
	}
	dir := t.TempDir()
	if err := r.Write(dir); err != nil {
		t.Fatal(err)
	}
	js, _ := os.ReadFile(filepath.Join(dir, "report.json"))
	html, _ := os.ReadFile(filepath.Join(dir, "report.html"))
	for _, want := range []string{`"block": [`, `"lean": true`, `"renderer_processes": 1`, `"blocked_requests": 4`, "browser_option_effects"} {
		if !strings.Contains(string(js), want) {
			t.Errorf("report.json lacks %s", want)
		}
	}
	if !strings.Contains(string(html), "images blocked") || !strings.Contains(string(html), "4 requests blocked") {
		t.Errorf("report.html does not state the browser options")
	}
}

// TestTreeSampler measures a process tree: a child that spins shows as
// CPU, and the tree's memory as PSS.
func TestTreeSampler(t *testing.T) {
	cmd := exec.Command("sh", "-c", "while :; do :; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	s := &TreeSampler{Root: os.Getpid()}
	if _, err := s.Sample(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	u, err := s.Sample()
	if err != nil {
		t.Fatal(err)
	}
	if u.Processes < 2 || u.PSS <= 0 || u.CPUPercent < 5 {
		t.Errorf("sample of this test and a spinning child: %+v", u)
	}
	if _, err := (&TreeSampler{Root: 1 << 30}).Sample(); err == nil {
		t.Error("no error for a process that does not exist")
	}
}

// TestGeneratorHotWarning: a second in which the generator ran hot makes
// a warning in the report and the live figures.
func TestGeneratorHotWarning(t *testing.T) {
	if !hot(Usage{CPUPercent: 180}, 2) || !hot(Usage{CPUPercent: 20, MachineBusy: 99}, 2) || hot(Usage{CPUPercent: 100, MachineBusy: 60}, 2) {
		t.Error("hot thresholds")
	}
	start := time.Now().Add(-3 * time.Second)
	agg := NewAggregate(start, []string{"a"})
	agg.Generator(start.Add(500*time.Millisecond), Usage{CPUPercent: 40, PSS: 300 << 20}, false)
	agg.Generator(start.Add(1500*time.Millisecond), Usage{CPUPercent: 190, PSS: 500 << 20}, true)
	if l := agg.Live(start.Add(2100 * time.Millisecond)); !l.Hot || l.GenCPU != 190 || l.GenPSSMiB != 500 {
		t.Errorf("live: %+v", l)
	}
	sc := &Scenario{Name: "hot"}
	r := agg.Report(sc, "test", start.Add(2*time.Second))
	if r.Generator.HotSeconds != 1 || r.Generator.MaxPSSMiB != 500 || r.Generator.AvgCPUPct != 115 || len(r.Warnings) != 1 {
		t.Errorf("report: %+v warnings %q", r.Generator, r.Warnings)
	}
	dir := t.TempDir()
	if err := r.Write(dir); err != nil {
		t.Fatal(err)
	}
	html, _ := os.ReadFile(filepath.Join(dir, "report.html"))
	if !strings.Contains(string(html), "generator hot in 1 of") || !strings.Contains(string(html), "Load generator CPU") {
		t.Error("report.html lacks the hot-generator warning or the generator charts")
	}
	// Merged aggregates add their generators' seconds.
	other := NewAggregate(start, []string{"a"})
	other.Generator(start.Add(1500*time.Millisecond), Usage{CPUPercent: 10, PSS: 100 << 20}, false)
	agg.Merge(other)
	if r := agg.Report(sc, "test", start.Add(2*time.Second)); r.Generator.MaxPSSMiB != 600 || r.Generator.HotSeconds != 1 {
		t.Errorf("merged: %+v", r.Generator)
	}
}
