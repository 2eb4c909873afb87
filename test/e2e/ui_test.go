package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/bootfleet/bootfleet/load"
)

// artifactDir is where the dashboard test writes its screenshots:
// $BOOTFLEET_ARTIFACTS when set, else a test temp dir.
func artifactDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("BOOTFLEET_ARTIFACTS"); d != "" {
		d = filepath.Join(d, "ui")
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// browserCtx starts headless Chromium (chromium-headless-shell when
// installed) with the flags of ../../shared/LAB.md.
func browserCtx(t *testing.T) context.Context {
	t.Helper()
	exe, err := load.FindBrowser("")
	if err != nil {
		t.Fatalf("%v: `make test` installs it", err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe), chromedp.UserDataDir(t.TempDir()), chromedp.NoSandbox, chromedp.Headless,
		chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1400, 900),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	tctx, cancelT := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelT(); cancelB(); cancelA() })
	return tctx
}

func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(90))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if len(buf) < 1000 {
		t.Fatalf("screenshot %s: only %d bytes", name, len(buf))
	}
	p := filepath.Join(dir, name+".jpg")
	if err := os.WriteFile(p, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s (%d bytes)", p, len(buf))
}

func bootRequest(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
}

// TestDashboard logs in to the dashboard in real headless Chromium, sees
// nodes appear in the table while boot requests arrive (no reload), opens
// a node's boot timeline chart, and with 1,000 nodes measures in the
// browser how long a change takes to show in the table.
func TestDashboard(t *testing.T) {
	s := startServer(t, "--profiles", exampleDir())
	tok, err := os.ReadFile(filepath.Join(s.DataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	art := artifactDir(t)
	// Routes of serve (not of the API package) that reveal config refuse
	// callers without the token.
	for _, p := range []string{"/api/v1/ignition?mac=52:54:00:aa:00:01", "/ui/", "/ui/app.js", "/debug/pprof/"} {
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Get(s.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusSeeOther {
			t.Errorf("GET %s without token: %d, want 401 or a redirect to the login", p, resp.StatusCode)
		}
	}
	ctx := browserCtx(t)

	// A wrong token is refused; the right one lands on the nodes table.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(s.URL+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=token]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=token]`), "wrong"),
		chromedp.Submit(chromedp.CSS(`input[name=token]`)),
		chromedp.WaitVisible(chromedp.CSS(`p.error`)),
	); err != nil {
		t.Fatalf("wrong token: %v", err)
	}
	errText, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`p.error`)))
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(`input[name=token]`), strings.TrimSpace(string(tok))),
		chromedp.Submit(chromedp.CSS(`input[name=token]`)),
		chromedp.WaitVisible(chromedp.CSS(`#count`)),
	); err != nil {
		t.Fatalf("login: %v", err)
	}
	if errText != "wrong token" {
		t.Errorf("wrong token shows %q", errText)
	}

	// Boot requests make rows appear without a reload.
	macs := []string{"52:54:00:aa:00:01", "52:54:00:aa:00:02", "52:54:00:aa:00:03"}
	for _, m := range macs {
		bootRequest(t, s.URL+"/ipxe?arch=x86_64&mac="+m)
		bootRequest(t, s.URL+"/ignition?mac="+m)
	}
	for _, m := range macs {
		if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`tr[data-mac="%s"]`, m)))); err != nil {
			t.Fatalf("row %s did not appear: %v", m, err)
		}
	}
	screenshot(t, ctx, art, "nodes")

	// The node page draws the timeline with non-empty bars.
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr[data-mac="%s"] a`, macs[0]))),
		chromedp.WaitVisible(chromedp.CSS(`#timeline rect.step`)),
	); err != nil {
		t.Fatalf("timeline: %v", err)
	}
	sizes, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](`[...document.querySelectorAll("#timeline rect.step")].flatMap(r => { const b = r.getBBox(); return [b.width, b.height]; })`))
	if err != nil {
		t.Fatal(err)
	}
	if len(sizes) < 4 {
		t.Fatalf("timeline has %d bars, want at least 2 (ipxe, ignition)", len(sizes)/2)
	}
	for i, v := range sizes {
		if v <= 0 {
			t.Errorf("timeline bar %d has a zero size: %v", i/2, sizes)
		}
	}
	if err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Poll[bool](`(document.getElementById("ignition") || {}).textContent.includes('"ignition"')`, chromedp.WithPollingTimeout(20*time.Second))(ctx, tg)
		return err
	})); err != nil {
		t.Errorf("node page shows no rendered Ignition: %v", err)
	}
	screenshot(t, ctx, art, "node-timeline")

	// Labelling from the node page changes the node.
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(`#label`), "rack=r1"),
		chromedp.Click(chromedp.CSS(`#label-apply`)),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Poll[bool](`(document.getElementById("labels") || {}).textContent === "rack=r1"`, chromedp.WithPollingTimeout(20*time.Second))(ctx, tg)
			return err
		}),
	); err != nil {
		t.Fatalf("label: %v", err)
	}

	// 1,000 nodes through boot requests, then one change, timed in the page.
	const n = 1000
	var wg sync.WaitGroup
	work := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				resp, err := http.Get(fmt.Sprintf("%s/ipxe?arch=x86_64&mac=52:54:01:00:%02x:%02x", s.URL, i/256, i%256))
				if err == nil {
					resp.Body.Close()
				}
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	if err := chromedp.Do(ctx,
		chromedp.Navigate(s.URL+"/ui/#/nodes"),
		chromedp.WaitVisible(chromedp.CSS(`#count`)),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Poll[bool](fmt.Sprintf(`document.querySelectorAll("#nodes tr").length >= %d`, n+len(macs)), chromedp.WithPollingTimeout(60*time.Second))(ctx, tg)
			return err
		}),
	); err != nil {
		t.Fatalf("1,000 rows: %v", err)
	}
	ms, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`(async () => {
		const mac = "52:54:01:00:01:f4";
		const t0 = performance.now();
		const res = await fetch("/api/v1/nodes/" + mac + "/labels", {method: "PATCH",
			headers: {"Content-Type": "application/json"}, body: JSON.stringify({set: {probe: "x1"}})});
		if (!res.ok) throw new Error("label: " + res.status);
		const row = () => document.querySelector('tr[data-mac="' + mac + '"]');
		while (!(row() && row().cells[5].textContent.includes("probe=x1"))) {
			if (performance.now() - t0 > 10000) throw new Error("change not shown in 10 s");
			await new Promise(r => requestAnimationFrame(r));
		}
		return performance.now() - t0;
	})()`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("timed change: %v", err)
	}
	t.Logf("with %d nodes in the table, a label change showed in the browser %.0f ms after the PATCH was sent (shared 2-core machine)", n+len(macs), ms)
	// The figure is 1 s; measured here 18–391 ms on a quiet run.
	// The test fails only well past it (as the fleet's failover test does),
	// so that CI running packages side by side on 2 cores does not turn a
	// timing into a failure, while a table that freezes still fails.
	if ms > 3000 {
		t.Errorf("change took %.0f ms to show with %d nodes, want about 1 s (fails past 3 s)", ms, n+len(macs))
	} else if ms > 1000 {
		t.Logf("over the 1 s figure on this run (%.0f ms): the machine is busy, or the table got slower", ms)
	}

	// The filter narrows the table.
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS(`#filter`), "probe=x1")); err != nil {
		t.Fatal(err)
	}
	visible, err := chromedp.Run(ctx, chromedp.Evaluate[int](`[...document.querySelectorAll("#nodes tr")].filter(r => !r.hidden).length`))
	if err != nil {
		t.Fatal(err)
	}
	if visible != 1 {
		t.Errorf("filter probe=x1 shows %d rows, want 1", visible)
	}
	screenshot(t, ctx, art, "nodes-1000")

	// The load page: a job the server does not know is told plainly and
	// offers no stop button; on the load list, a report pasted in is drawn
	// as charts with the per-step table.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(s.URL+"/ui/#/load?job=nosuchjob"),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Poll[bool](`(document.getElementById("job-status") || {}).textContent.includes("not found")`, chromedp.WithPollingTimeout(20*time.Second))(ctx, tg)
			return err
		}),
	); err != nil {
		t.Fatalf("load job view: %v", err)
	}
	if hidden, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("job-stop").hidden`)); err != nil || !hidden {
		t.Errorf("stop button shown for a job the server does not know (hidden=%v, %v)", hidden, err)
	}
	report := `{"scenario":"chat","target":"http://127.0.0.1:1","sessions":4,"hits_per_s":12.5,"requests":90,"bytes":12345,"ws_received":40,
		"steps":[{"name":"open","count":20,"failures":1,"avg_ms":120,"min_ms":80,"max_ms":300,"p50_ms":110,"p90_ms":200,"p95_ms":250,"p99_ms":290},
		         {"name":"messages","count":18,"failures":0,"avg_ms":40,"min_ms":10,"max_ms":90,"p50_ms":35,"p90_ms":70,"p95_ms":80,"p99_ms":88}],
		"total":{"name":"total","count":38,"failures":1,"avg_ms":83},
		"timeline":[{"second":0,"steps":2,"failures":0,"sessions":1,"latency_sum_ms":200,"ws_received":0},
		            {"second":1,"steps":10,"failures":1,"sessions":3,"latency_sum_ms":900,"ws_received":12},
		            {"second":2,"steps":14,"failures":0,"sessions":4,"latency_sum_ms":1100,"ws_received":16},
		            {"second":3,"steps":12,"failures":0,"sessions":4,"latency_sum_ms":800,"ws_received":12}]}`
	if err := chromedp.Do(ctx,
		chromedp.Navigate(s.URL+"/ui/#/load"),
		chromedp.WaitVisible(chromedp.CSS(`#report-json`)),
		chromedp.SetValue(chromedp.CSS(`#report-json`), report),
		chromedp.Click(chromedp.CSS(`#report-show`)),
		chromedp.WaitVisible(chromedp.CSS(`#charts polyline`)),
	); err != nil {
		t.Fatalf("report view: %v", err)
	}
	widths, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](`[...document.querySelectorAll("#charts polyline")].map(p => { const b = p.getBBox(); return b.width * Math.max(b.height, 1); })`))
	if err != nil {
		t.Fatal(err)
	}
	// A pasted report has no percentile samples: five charts, latency
	// with its avg and max lines.
	if charts, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#charts svg.chart").length`)); err != nil || charts != 5 || len(widths) != 6 {
		t.Errorf("report has %d charts with %d lines (%v), want 5 (sessions, hits/s, latency avg+max, errors, ws)", charts, len(widths), err)
	}
	for i, w := range widths {
		if w <= 0 {
			t.Errorf("chart %d is empty: %v", i, widths)
		}
	}
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#steps tr").length`))
	if err != nil || rows != 4 {
		t.Errorf("steps table has %d rows (%v), want header, 2 steps and total", rows, err)
	}
	screenshot(t, ctx, art, "load-report")

	// The units page answers from the units API (no units here: empty, no error).
	if err := chromedp.Do(ctx,
		chromedp.Navigate(s.URL+"/ui/#/units"),
		chromedp.WaitReady(chromedp.CSS(`#units`)),
		chromedp.Sleep(500*time.Millisecond),
	); err != nil {
		t.Fatalf("units page: %v", err)
	}
	if e, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("main p.error").textContent`)); err != nil || e != "" {
		t.Errorf("units page error %q (%v)", e, err)
	}
}
