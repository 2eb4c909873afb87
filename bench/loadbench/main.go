// Command loadbench is the load benchmark behind bench/load.sh: it serves
// the test app (load/chatapp) on loopback and, on its websocket scenario,
// finds for each tool and browser the largest number of concurrent
// sessions that holds (no failures, the main step's p95 within 10% of a
// 5-session run of the same configuration), sampling the summed PSS and
// CPU of the tool's whole process tree (runner and browsers) once a
// second. It prints a Markdown section for bench/RESULTS.md.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/bootfleet/bootfleet/load"
	"github.com/bootfleet/bootfleet/load/chatapp"
)

type config struct {
	Tool    string // bootfleet or artillery
	Name    string
	Browser string   // executable
	Lean    string   // bootfleet: the scenario's browser options (YAML)
	Levels  []int    // sessions to try, in order, after the baseline of 5
	Args    []string // extra tool arguments
}

// row is one configuration's runs: the 5-session baseline and the
// levels above it, and the highest that held.
type row struct {
	C    config
	Base result
	Runs []result
	Best result
}

type result struct {
	N          int
	P95        float64 // main step, ms
	Failures   int64
	PeakPSS    int64   // bytes
	CPU        float64 // % of one core, mean over the hold
	Holds      bool
	Why        string
	WallS      float64
	Iterations int64
	Ready      int64 // runs of the main step
}

type bench struct {
	target    string
	bootfleet string
	artillery string
	flowDir   string
	out       string
	tools     string
	messages  int
	hold      time.Duration
	budget    time.Time
}

func main() {
	var b bench
	var budget time.Duration
	flag.StringVar(&b.bootfleet, "bootfleet", "bin/bootfleet", "bootfleet binary")
	flag.StringVar(&b.artillery, "artillery", "", "artillery executable (node_modules/.bin/artillery)")
	flag.StringVar(&b.flowDir, "flow", "bench/artillery", "directory of the Artillery flow (flow.js)")
	flag.StringVar(&b.out, "out", "bench/out/load", "directory for the runs' reports")
	flag.IntVar(&b.messages, "messages", 50, "websocket messages each iteration waits for (10 a second)")
	flag.StringVar(&b.tools, "tools", "bootfleet,artillery", "tools to run")
	flag.DurationVar(&b.hold, "hold", 15*time.Second, "how long every session runs after the ramp-up")
	flag.DurationVar(&budget, "budget", 9*time.Minute, "stop trying higher levels after this")
	flag.Parse()
	b.budget = time.Now().Add(budget)
	if err := b.run(); err != nil {
		slog.Error("loadbench", "error", err)
		os.Exit(1)
	}
}

func (b *bench) run() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	var seen chatapp.Counters
	srv := &http.Server{Handler: chatapp.Handler(&seen, 0)}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	b.target = "http://" + ln.Addr().String()
	if err := os.MkdirAll(b.out, 0o755); err != nil {
		return err
	}

	shell, full := load.HeadlessShell, load.Chromium
	configs := []config{
		{Tool: "bootfleet", Name: "bootfleet, chromium-headless-shell", Browser: shell, Levels: []int{10, 20, 30, 40, 60, 80}},
		{Tool: "bootfleet", Name: "bootfleet, chromium-headless-shell, lean (block images+fonts, lean flags)", Browser: shell,
			Lean: "browser:\n  block: [images, fonts]\n  lean: true\n", Levels: []int{10, 20, 30, 40, 60, 80}},
		{Tool: "artillery", Name: "Artillery + Playwright, chromium-headless-shell", Browser: shell, Levels: []int{10, 15, 20, 30}},
		{Tool: "artillery", Name: "Artillery + Playwright, chromium", Browser: full, Levels: []int{7, 10, 15}},
	}
	var rows []row
	var chosen []config
	for _, c := range configs {
		if c.Tool == "artillery" && b.artillery == "" || !strings.Contains(b.tools, c.Tool) {
			continue
		}
		chosen = append(chosen, c)
	}
	// Each configuration gets an equal share of the time budget.
	began, budget := time.Now(), time.Until(b.budget)
	for i, c := range chosen {
		share := began.Add(budget * time.Duration(i+1) / time.Duration(len(chosen)))
		base, err := b.level(c, 5)
		if err != nil {
			return err
		}
		base.Holds = base.Failures == 0
		if !base.Holds && base.Why == "" {
			base.Why = fmt.Sprintf("%d failures", base.Failures)
		}
		r := row{C: c, Base: base, Runs: []result{base}}
		if base.Holds {
			r.Best = base
		}
		for _, n := range c.Levels {
			if !r.Best.Holds || time.Now().After(share) {
				break
			}
			res, err := b.level(c, n)
			if err != nil {
				return err
			}
			switch {
			case res.Why != "":
			case res.Failures > 0:
				res.Why = fmt.Sprintf("%d failures", res.Failures)
			case res.P95 > 1.1*base.P95:
				res.Why = fmt.Sprintf("p95 %.1f ms > 1.1 × %.1f", res.P95, base.P95)
			default:
				res.Holds = true
			}
			r.Runs = append(r.Runs, res)
			if !res.Holds {
				break
			}
			r.Best = res
		}
		rows = append(rows, r)
		fmt.Fprintf(os.Stderr, "loadbench: %s holds %d\n", c.Name, r.Best.N)
	}
	return resultsMD.Execute(os.Stdout, map[string]any{"Rows": rows, "Hold": b.hold, "Best": bestOf(rows), "Seen": &seen})
}

// level runs one configuration at n sessions.
func (b *bench) level(c config, n int) (result, error) {
	ramp := time.Duration(min(n, 50)) * 100 * time.Millisecond
	dir := filepath.Join(b.out, fmt.Sprintf("%s-%s-%d", c.Tool, sanitize(c.Name), n))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return result{}, err
	}
	var cmd *exec.Cmd
	switch c.Tool {
	case "bootfleet":
		sc := fmt.Sprintf(`name: chat-ws
target: %s
sessions: %d
ramp_up: %s
duration: %s
%ssteps:
  - name: open
    navigate: /
  - type: {selector: "#user", text: "user{{.Session}}"}
  - click: "#login"
  - name: ready
    wait_for: ".room.ready"
  - name: messages
    ws_messages: {count: %d, timeout: 30s}
`, b.target, n, ramp, b.hold, c.Lean, b.messages)
		path := filepath.Join(dir, "scenario.yaml")
		if err := os.WriteFile(path, []byte(sc), 0o644); err != nil {
			return result{}, err
		}
		cmd = exec.Command(b.bootfleet, append([]string{"load", "run", path, "--local", "--browser", c.Browser, "--out", dir}, c.Args...)...)
	case "artillery":
		script := fmt.Sprintf(`config:
  target: %s
  phases:
    - duration: %d
      arrivalCount: %d
  processor: %s
  engines:
    playwright:
      aggregateByName: true
      launchOptions:
        executablePath: %s
        args: [--no-sandbox, --disable-gpu, --disable-quic, --no-first-run, --disable-background-networking, --disable-component-update, --disable-sync, --disable-dev-shm-usage]
scenarios:
  - engine: playwright
    testFunction: chat
`, b.target, max(int(ramp.Seconds()), 1), n, must(filepath.Abs(filepath.Join(b.flowDir, "flow.js"))), c.Browser)
		path := filepath.Join(dir, "artillery.yml")
		if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
			return result{}, err
		}
		cmd = exec.Command(b.artillery, "run", "--output", filepath.Join(dir, "out.json"), path)
		cmd.Env = append(os.Environ(), fmt.Sprintf("HOLD_S=%d", int(b.hold.Seconds())), fmt.Sprintf("MESSAGES=%d", b.messages), "ARTILLERY_DISABLE_TELEMETRY=true")
	}
	log, err := os.Create(filepath.Join(dir, "output.log"))
	if err != nil {
		return result{}, err
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	began := time.Now()
	if err := cmd.Start(); err != nil {
		return result{}, fmt.Errorf("%s: %w", c.Name, err)
	}
	// Bounded: a run that hangs is killed with its process group.
	ctx, cancel := context.WithTimeout(context.Background(), ramp+b.hold+90*time.Second)
	defer cancel()
	stopKill := context.AfterFunc(ctx, func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	defer stopKill()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()

	res := result{N: n}
	s := &load.TreeSampler{Root: cmd.Process.Pid}
	_, _ = s.Sample()
	var cpu []float64
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var runErr error
loop:
	for {
		select {
		case runErr = <-waited:
			break loop
		case <-tick.C:
			u, err := s.Sample()
			if err != nil {
				continue
			}
			res.PeakPSS = max(res.PeakPSS, u.PSS)
			cpu = append(cpu, u.CPUPercent)
		}
	}
	// Browsers left behind in the tool's process group end with the run.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	res.WallS = time.Since(began).Seconds()
	// CPU while all sessions ran: the busiest stretch of the hold's
	// length less 4 s (start-up takes a tool-dependent time before it).
	res.CPU = busiest(cpu, max(int(b.hold.Seconds())-4, 3))
	if ctx.Err() != nil {
		return result{}, fmt.Errorf("%s at %d sessions: killed after %s (see %s)", c.Name, n, ramp+b.hold+90*time.Second, log.Name())
	}
	switch c.Tool {
	case "bootfleet":
		var r load.Report
		if err := readJSON(filepath.Join(dir, "report.json"), &r); err != nil {
			return result{}, fmt.Errorf("%s at %d: %v (run: %v, see %s)", c.Name, n, err, runErr, log.Name())
		}
		res.Failures = r.Total.Failures + r.LostSessions
		res.Iterations = r.Iterations
		for _, st := range r.Steps {
			if st.Name == "ready" {
				res.P95, res.Ready = st.P95Ms, st.Count
			}
		}
		if r.Sessions < int64(n) {
			res.Failures += int64(n) - r.Sessions // sessions that never ran
		}
	case "artillery":
		var out struct {
			Aggregate struct {
				Counters  map[string]int64 `json:"counters"`
				Summaries map[string]struct {
					P95   float64 `json:"p95"`
					Count int64   `json:"count"`
				} `json:"summaries"`
			} `json:"aggregate"`
		}
		if err := readJSON(filepath.Join(dir, "out.json"), &out); err != nil {
			return result{}, fmt.Errorf("%s at %d: %v (run: %v, see %s)", c.Name, n, err, runErr, log.Name())
		}
		a := out.Aggregate
		res.Failures = a.Counters["vusers.failed"]
		if done := a.Counters["vusers.completed"]; done+res.Failures < int64(n) {
			res.Failures += int64(n) - done - res.Failures
		}
		res.Iterations = a.Counters["iterations"]
		res.P95 = a.Summaries["ready"].P95
		res.Ready = a.Summaries["ready"].Count
	}
	if res.Ready < int64(n) && res.Failures == 0 {
		res.Failures = int64(n) - res.Ready
		res.Why = fmt.Sprintf("the ready step ran %d times for %d sessions", res.Ready, n)
	}
	if runErr != nil && res.Failures == 0 {
		res.Failures = 1
		res.Why = "exit: " + runErr.Error()
	}
	fmt.Fprintf(os.Stderr, "loadbench: %-70s %3d sessions: p95 %6.1f ms, failures %d, peak PSS %4.0f MiB, CPU %3.0f%%, %d iterations, %.0f s\n",
		c.Name, n, res.P95, res.Failures, float64(res.PeakPSS)/(1<<20), res.CPU, res.Iterations, res.WallS)
	return res, nil
}

// busiest is the highest mean of w consecutive samples (of all, when
// fewer).
func busiest(xs []float64, w int) float64 {
	if len(xs) == 0 {
		return 0
	}
	w = min(w, len(xs))
	var sum, best float64
	for i, x := range xs {
		sum += x
		if i >= w {
			sum -= xs[i-w]
		}
		if i >= w-1 {
			best = max(best, sum/float64(w))
		}
	}
	return best
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func must(s string, err error) string {
	if err != nil {
		panic(err) // filepath.Abs fails only without a working directory
	}
	return s
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(s))
}

func gib(b int64) float64 { return float64(b) / (1 << 30) }

// perGiB is sessions per GiB of summed PSS at that level.
func perGiB(r result) float64 {
	if r.PeakPSS == 0 {
		return 0
	}
	return float64(r.N) / gib(r.PeakPSS)
}

type best struct {
	Bootfleet, Artillery         result
	BootfleetName, ArtilleryName string
	SessionsRatio, PerGiBRatio   float64
	Ok                           bool
}

// bestOf picks each tool's best configuration: most sessions held, then
// most sessions per GiB.
func bestOf(rows []row) best {
	var bst best
	better := func(a, b result) bool {
		return a.N > b.N || a.N == b.N && perGiB(a) > perGiB(b)
	}
	for _, r := range rows {
		if !r.Best.Holds {
			continue
		}
		switch r.C.Tool {
		case "bootfleet":
			if better(r.Best, bst.Bootfleet) {
				bst.Bootfleet, bst.BootfleetName = r.Best, r.C.Name
			}
		case "artillery":
			if better(r.Best, bst.Artillery) {
				bst.Artillery, bst.ArtilleryName = r.Best, r.C.Name
			}
		}
	}
	if bst.Artillery.N > 0 && bst.Bootfleet.N > 0 {
		bst.Ok = true
		bst.SessionsRatio = float64(bst.Bootfleet.N) / float64(bst.Artillery.N)
		bst.PerGiBRatio = perGiB(bst.Bootfleet) / perGiB(bst.Artillery)
	}
	return bst
}

var resultsMD = template.Must(template.New("md").Funcs(template.FuncMap{
	"mib":    func(b int64) string { return fmt.Sprintf("%.0f", float64(b)/(1<<20)) },
	"pergib": func(r result) string { return fmt.Sprintf("%.1f", perGiB(r)) },
	"cpups":  func(r result) string { return fmt.Sprintf("%.1f", r.CPU/math.Max(float64(r.N), 1)) },
	"f1":     func(f float64) string { return fmt.Sprintf("%.1f", f) },
	"marginal": func(runs []result) string {
		// Between the first run and the largest without failures.
		var top result
		for _, r := range runs[1:] {
			if r.Failures == 0 && r.N > top.N {
				top = r
			}
		}
		if top.N == 0 {
			return "–"
		}
		return fmt.Sprintf("%.1f", float64(top.PeakPSS-runs[0].PeakPSS)/(1<<20)/float64(top.N-runs[0].N))
	},
	"f2": func(f float64) string { return fmt.Sprintf("%.2f", f) },
}).Parse(`| tool and browser | holds at N | peak PSS at N (MiB) | sessions/GiB | CPU at N (% of one core) | CPU/session | ready p95 at 5 → at N (ms) | marginal MiB/session | runs (N: ready p95 ms, PSS MiB, CPU %, failures) |
|---|---|---|---|---|---|---|---|---|
{{range .Rows}}| {{.C.Name}} | {{if .Best.Holds}}{{.Best.N}}{{else}}none{{end}} | {{mib .Best.PeakPSS}} | {{pergib .Best}} | {{f1 .Best.CPU}} | {{cpups .Best}} | {{f1 .Base.P95}} → {{f1 .Best.P95}} | {{marginal .Runs}} | {{range .Runs}}{{.N}}: {{f1 .P95}}, {{mib .PeakPSS}}, {{f1 .CPU}}, {{.Failures}}{{if .Why}} ({{.Why}}){{end}}; {{end}}|
{{end}}
{{with .Best}}{{if .Ok}}Best of each: bootfleet ({{.BootfleetName}}) {{.Bootfleet.N}} sessions at {{pergib .Bootfleet}}/GiB; Artillery ({{.ArtilleryName}}) {{.Artillery.N}} at {{pergib .Artillery}}/GiB. **Ratios: {{f2 .SessionsRatio}}× the concurrent sessions, {{f2 .PerGiBRatio}}× the sessions per GiB** (targets ≥ 2×).{{else}}No ratio: a tool held no level.{{end}}{{end}}
`))
