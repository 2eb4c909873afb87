package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/bootfleet/bootfleet/fleet"
	"github.com/bootfleet/bootfleet/load"
	"github.com/bootfleet/bootfleet/loadjob"
)

// loginBrowser logs in to the dashboard with the server's admin token.
func loginBrowser(t *testing.T, ctx context.Context, s *server) {
	t.Helper()
	tok, err := os.ReadFile(filepath.Join(s.DataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx,
		chromedp.Navigate(s.URL+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=token]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=token]`), strings.TrimSpace(string(tok))),
		chromedp.Submit(chromedp.CSS(`input[name=token]`)),
		chromedp.WaitVisible(chromedp.CSS(`#count`)),
	); err != nil {
		t.Fatalf("login: %v", err)
	}
}

// poll waits in the page until the JavaScript expression is true.
func poll(what, expr string, timeout time.Duration) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(timeout))(ctx, tg); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	})
}

// startLocalWorker starts a load job with the CLI and runs its one worker
// as a local process (no podman: the job's unit stays unplaced), with the
// job token read from the unit's env through the units API as the fleet
// would hand it to the container. It answers the job ID and the worker's
// exit.
func startLocalWorker(t *testing.T, s *server, scenario string) (string, <-chan error) {
	t.Helper()
	out, errOut, code := run(t, "load", "start", scenario, "--server", s.URL, "--data-dir", s.DataDir)
	if code != 0 {
		t.Fatalf("load start: exit %d\n%s", code, errOut)
	}
	job := strings.TrimSpace(out)
	tok, err := os.ReadFile(filepath.Join(s.DataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	var env map[string]string
	var units []fleet.UnitStatus
	waitUntil(t, "the job's unit in the units API", 20*time.Second, func() bool {
		req, _ := http.NewRequest("GET", s.URL+"/api/v1/units", nil)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		units = nil
		if err := json.NewDecoder(resp.Body).Decode(&units); err != nil {
			t.Fatalf("units: %v", err)
		}
		for _, u := range units {
			if u.Unit.Name == "load-"+job {
				env = u.Unit.Env
			}
		}
		return env != nil
	})
	if env["BOOTFLEET_JOB_TOKEN"] == "" {
		t.Fatalf("unit load-%s has no job token: %+v", job, env)
	}
	cmd := exec.Command(bootfleet(t), "load", "worker", "--job", job, "--server", s.URL, "--worker", "0")
	cmd.Env = append(os.Environ(), "BOOTFLEET_JOB_TOKEN="+env["BOOTFLEET_JOB_TOKEN"])
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("worker of %s:\n%s", job, logs.String())
		}
	})
	return job, done
}

// chartPoints counts the points of every line of the load charts.
const chartPoints = `[...document.querySelectorAll("#charts svg.chart")].map(c => c.dataset.title + ":" +
	[...c.querySelectorAll("polyline")].reduce((n, p) => n + p.getAttribute("points").trim().split(/\s+/).length, 0))`

// TestDashboardLoad watches a real small load job in the dashboard: a
// worker (real headless browsers) runs against a chat app on loopback while
// the job page's charts grow second by second with the per-step table;
// then the finished report is listed, two jobs' reports are compared, and
// a third job is stopped with its page's Stop button.
func TestDashboardLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts browsers")
	}
	if _, err := load.FindBrowser(""); err != nil {
		t.Fatalf("%v: `make test` installs chromium-headless-shell", err)
	}
	s := startServer(t, "--profiles", exampleDir())
	app := startCounterApp(t, "127.0.0.1")
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	steps := `steps:
  - name: open
    navigate: /
  - click: "#login"
  - wait_for: ".room.ready"
  - name: messages
    ws_messages: {count: 3, timeout: 20s}
  - name: broken
    navigate: /broken
`
	long := write("chat.yaml", "name: chat\ntarget: "+app.URL+"\nsessions: 2\nduration: 12s\n"+steps)
	short := write("chat-short.yaml", "name: chat-short\ntarget: "+app.URL+"\nsessions: 1\niterations: 2\n"+steps)

	art := artifactDir(t)
	ctx := browserCtx(t)
	loginBrowser(t, ctx, s)

	job, done := startLocalWorker(t, s, long)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(s.URL+"/ui/#/load?job="+job),
		poll("job running with steps done and its charts", `document.getElementById("job-status").dataset.state === "running" &&
			document.querySelectorAll("#steps tr").length > 1 && document.querySelectorAll("#charts svg.chart").length === 6`, 90*time.Second),
	); err != nil {
		page, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("main").innerText`))
		t.Fatalf("%v; the page:\n%s", err, page)
	}
	first, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](chartPoints))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond)
	second, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](chartPoints))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("chart points %v, 2.5 s later %v", first, second)
	sum := func(xs []string) (n int) {
		for _, x := range xs {
			var k int
			fmt.Sscan(x[strings.LastIndex(x, ":")+1:], &k)
			n += k
		}
		return n
	}
	if sum(second) <= sum(first) {
		t.Errorf("the charts did not grow in 2.5 s while the job ran: %v then %v", first, second)
	}
	if len(second) != 6 || !strings.HasPrefix(second[5], "latency percentiles") {
		t.Errorf("live charts %v, want sessions, hits/s, latency, errors, ws and latency percentiles", second)
	}
	screenshot(t, ctx, art, "load-live")
	names, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#steps tr")].slice(1).map(r => r.cells[0].textContent)`))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"open", "messages", "broken", "total"} {
		if !strings.Contains(","+strings.Join(names, ",")+",", ","+want+",") {
			t.Errorf("steps table lacks %s: %v", want, names)
		}
	}
	if hidden, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("job-stop").hidden`)); err != nil || hidden {
		t.Errorf("no stop button while the job runs (hidden=%v, %v)", hidden, err)
	}

	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("worker: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("worker still running 2 min after the job's charts showed")
	}
	if err := chromedp.Do(ctx, poll("job finished in the page", `document.getElementById("job-status").dataset.state === "finished"`, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	// The finished report's open step counts what the app served.
	openCount, err := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll("#steps tr")].find(r => r.cells[0].textContent === "open").cells[1].textContent`))
	if err != nil || openCount != fmt.Sprint(app.pages.Load()) {
		t.Errorf("finished report shows open ×%s (%v), the app served / %d times", openCount, err, app.pages.Load())
	}
	screenshot(t, ctx, art, "load-finished")

	// A second, shorter job; then both reports are listed and compared.
	job2, done2 := startLocalWorker(t, s, short)
	select {
	case err := <-done2:
		if err != nil {
			t.Fatalf("worker of the second job: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("second job's worker still running after 2 min")
	}
	waitUntil(t, "the second job finished", 30*time.Second, func() bool {
		out, _, _ := run(t, "load", "status", job2, "-o", "json", "--server", s.URL, "--data-dir", s.DataDir)
		var st loadjob.Status
		return json.Unmarshal([]byte(out), &st) == nil && st.Job.State == loadjob.StateFinished
	})
	if err := chromedp.Do(ctx,
		chromedp.Navigate(s.URL+"/ui/#/load"),
		poll("both reports listed", fmt.Sprintf(`!!document.querySelector('#reports tr[data-report=%q]') && !!document.querySelector('#reports tr[data-report=%q]') && !!document.querySelector('#jobs tr[data-job=%q]')`, job, job2, job), 20*time.Second),
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`#reports tr[data-report=%q] input`, job))),
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`#reports tr[data-report=%q] input`, job2))),
		chromedp.Click(chromedp.CSS(`#compare-go`)),
		poll("comparison drawn", `!!document.querySelector('#compare tr[data-step="open"]') && !!document.querySelector('#compare tr[data-step="total"]')`, 20*time.Second),
	); err != nil {
		t.Fatal(err)
	}
	cells, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelector('#compare tr[data-step="open"]').cells].map(c => c.textContent)`))
	if err != nil {
		t.Fatal(err)
	}
	// step, count A, count B, Δ count, fail A, fail B, Δ fail, p50 A, B, Δ, p95 …, p99 …
	if len(cells) != 16 || cells[1] == "0" || cells[2] != "2" || !strings.HasPrefix(cells[3], "-") || !strings.Contains(cells[3], "%") {
		t.Errorf("compare row for open: %v (job A ran open %s times, B twice)", cells, openCount)
	}
	broken, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelector('#compare tr[data-step="broken"]').cells].map(c => c.textContent)`))
	if err != nil || len(broken) != 16 || broken[4] != broken[1] || broken[5] != "2" {
		t.Errorf("compare row for broken (every run fails): %v (%v)", broken, err)
	}
	screenshot(t, ctx, art, "load-compare")

	// A long job stopped from its page: the Stop button calls the stop
	// route, the worker ends its run, and the page shows the job stopped.
	stopping := write("chat-stop.yaml", "name: chat-stop\ntarget: "+app.URL+"\nsessions: 1\nduration: 5m\n"+steps)
	job3, done3 := startLocalWorker(t, s, stopping)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(s.URL+"/ui/#/load?job="+job3),
		poll("long job running with steps done", `document.getElementById("job-status").dataset.state === "running" && document.querySelectorAll("#charts svg.chart").length === 6`, 90*time.Second),
		chromedp.Click(chromedp.CSS(`#job-stop`)),
		poll("job stopped in the page", `document.getElementById("job-status").dataset.state === "stopped" && document.getElementById("job-stop").hidden`, 60*time.Second),
	); err != nil {
		page, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("main").innerText`))
		t.Fatalf("%v; the page:\n%s", err, page)
	}
	select {
	case err := <-done3:
		if err != nil {
			t.Errorf("worker of the stopped job: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("worker of the stopped job still running 30 s after the page showed it stopped")
	}
}
