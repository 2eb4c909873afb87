package load

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html/template"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// StepReport is one row of the report: the contract's fields of a step.
type StepReport struct {
	Name      string           `json:"name"`
	Count     int64            `json:"count"`
	Failures  int64            `json:"failures"`
	FailedPct float64          `json:"failed_pct"`
	AvgMs     float64          `json:"avg_ms"`
	MinMs     float64          `json:"min_ms"`
	MaxMs     float64          `json:"max_ms"`
	P50Ms     float64          `json:"p50_ms"`
	P90Ms     float64          `json:"p90_ms"`
	P95Ms     float64          `json:"p95_ms"`
	P99Ms     float64          `json:"p99_ms"`
	PerSecond float64          `json:"per_second"`
	Requests  int64            `json:"requests"` // loaded while the step ran
	Bytes     int64            `json:"bytes"`
	Reasons   map[string]int64 `json:"failure_reasons,omitempty"`
}

// VitalReport summarises one Web Vital over every navigation.
type VitalReport struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50"`
	P75   float64 `json:"p75"`
	P95   float64 `json:"p95"`
}

// Report is what a run measured, as report.json holds it.
type Report struct {
	Scenario     string                 `json:"scenario"`
	Target       string                 `json:"target"`
	Browser      string                 `json:"browser"`
	Started      time.Time              `json:"started"`
	DurationS    float64                `json:"duration_s"`
	Sessions     int64                  `json:"sessions"` // most running at once
	LostSessions int64                  `json:"lost_sessions"`
	Iterations   int64                  `json:"iterations"`
	Steps        []StepReport           `json:"steps"`
	Total        StepReport             `json:"total"`
	HitsPerS     float64                `json:"hits_per_s"`
	Requests     int64                  `json:"requests"`
	Bytes        int64                  `json:"bytes"`
	HTTPStatuses map[string]int64       `json:"http_responses"` // by status; "0" outside 100–599
	WSSent       int64                  `json:"ws_sent"`
	WSReceived   int64                  `json:"ws_received"`
	WSPerS       float64                `json:"ws_received_per_s"`
	WebVitals    map[string]VitalReport `json:"web_vitals"`
	// BrowserOptions are the scenario's lean-rendering options that were
	// on, and Effects what each changes in what was measured.
	BrowserOptions  BrowserOptions  `json:"browser_options"`
	Effects         []string        `json:"browser_option_effects,omitempty"`
	BlockedRequests int64           `json:"blocked_requests"`
	Generator       GeneratorReport `json:"generator"`
	// Warnings say when the figures may not be the app's (a hot
	// generator).
	Warnings []string `json:"warnings,omitempty"`
	Timeline []Bucket `json:"timeline"`
	// Workers of a distributed run (none for a local one).
	Workers []WorkerReport `json:"workers,omitempty"`
}

// GeneratorReport is what the load generators (runner and browsers) used
// themselves, from one sample a second.
type GeneratorReport struct {
	AvgCPUPct  float64 `json:"avg_cpu_pct"` // of one core, summed over generators
	MaxCPUPct  float64 `json:"max_cpu_pct"`
	MaxPSSMiB  float64 `json:"max_pss_mib"`
	HotSeconds int64   `json:"hot_seconds"` // seconds in which a generator ran hot
}

// StepsByName indexes the report's steps (not the total) by name.
func (r Report) StepsByName() map[string]StepReport {
	by := make(map[string]StepReport, len(r.Steps))
	for _, s := range r.Steps {
		by[s.Name] = s
	}
	return by
}

func ms(us int64) float64 { return math.Round(float64(us)/10) / 100 }

// Report turns the aggregate into a report.
func (a *Aggregate) Report(sc *Scenario, browser string, end time.Time) Report {
	a.mu.Lock()
	defer a.mu.Unlock()
	dur := end.Sub(a.start).Seconds()
	r := Report{Scenario: sc.Name, Browser: browser, Started: a.start.UTC(), DurationS: math.Round(dur*10) / 10,
		Sessions: a.maxSess, LostSessions: a.lost, Iterations: a.iters, WebVitals: map[string]VitalReport{}}
	if sc.Target != nil {
		r.Target = sc.Target.String()
	}
	all := newHist()
	for _, name := range a.order {
		s := a.steps[name]
		all.Merge(s.Latency)
		sr := stepReport(name, s.Count, s.Failures, s.Latency, dur, s.Reasons)
		sr.Requests, sr.Bytes = s.Requests, s.Bytes
		r.Steps = append(r.Steps, sr)
		r.Total.Count += s.Count
		r.Total.Failures += s.Failures
		r.Total.Requests += s.Requests
		r.Total.Bytes += s.Bytes
	}
	req, bytes := r.Total.Requests, r.Total.Bytes
	r.Total = stepReport("total", r.Total.Count, r.Total.Failures, all, dur, nil)
	r.Total.Requests, r.Total.Bytes = req, bytes
	r.HTTPStatuses = map[string]int64{}
	for st, n := range a.statuses {
		r.HTTPStatuses[strconv.FormatInt(st, 10)] = n
	}
	r.Timeline = slices.Clone(a.buckets)
	r.BrowserOptions, r.Effects = sc.Browser, sc.Browser.Effects()
	var cpuSum float64
	var cpuN int
	for _, b := range r.Timeline {
		r.BlockedRequests += b.Blocked
		if b.GenPSSMiB > 0 {
			cpuSum += b.GenCPU
			cpuN++
		}
		r.Generator.MaxCPUPct = max(r.Generator.MaxCPUPct, math.Round(b.GenCPU*10)/10)
		r.Generator.MaxPSSMiB = max(r.Generator.MaxPSSMiB, math.Round(b.GenPSSMiB*10)/10)
		if b.GenHot > 0 {
			r.Generator.HotSeconds++
		}
	}
	if cpuN > 0 {
		r.Generator.AvgCPUPct = math.Round(cpuSum/float64(cpuN)*10) / 10
	}
	if h := r.Generator.HotSeconds; h > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("generator hot in %d of %d seconds (its CPU near all its cores, or the machine %.0f%% busy): latencies of those seconds may measure the generator, not the app", h, len(r.Timeline), hotMachineBusy))
	}
	for _, b := range r.Timeline {
		r.Requests += b.Requests
		r.Bytes += b.Bytes
		r.WSSent += b.WSSent
		r.WSReceived += b.WSReceived
	}
	if dur > 0 {
		r.HitsPerS = math.Round(float64(r.Total.Count)/dur*100) / 100
		r.WSPerS = math.Round(float64(r.WSReceived)/dur*100) / 100
	}
	for name, h := range a.vitals {
		scale := vitalScale(name)
		q := func(p float64) float64 { return math.Round(float64(h.ValueAtQuantile(p))/scale*1000) / 1000 }
		r.WebVitals[name] = VitalReport{Count: h.TotalCount(), P50: q(50), P75: q(75), P95: q(95)}
	}
	return r
}

func stepReport(name string, count, failures int64, h interface {
	Mean() float64
	Min() int64
	Max() int64
	ValueAtQuantile(float64) int64
}, dur float64, reasons map[string]int64) StepReport {
	s := StepReport{Name: name, Count: count, Failures: failures}
	if count == 0 {
		return s
	}
	s.FailedPct = math.Round(float64(failures)/float64(count)*10000) / 100
	s.AvgMs = math.Round(h.Mean()/10) / 100
	s.MinMs, s.MaxMs = ms(h.Min()), ms(h.Max())
	s.P50Ms, s.P90Ms, s.P95Ms, s.P99Ms = ms(h.ValueAtQuantile(50)), ms(h.ValueAtQuantile(90)), ms(h.ValueAtQuantile(95)), ms(h.ValueAtQuantile(99))
	if dur > 0 {
		s.PerSecond = math.Round(float64(count)/dur*100) / 100
	}
	if len(reasons) > 0 {
		s.Reasons = maps.Clone(reasons)
	}
	return s
}

// Write writes report.json, report.csv and report.html into dir.
func (r Report) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := r.writeCSV(filepath.Join(dir, "report.csv")); err != nil {
		return err
	}
	return r.writeHTML(filepath.Join(dir, "report.html"))
}

func (r Report) writeCSV(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	defer f.Close()
	w := csv.NewWriter(f)
	w.Write([]string{"name", "count", "failures", "failed_pct", "avg_ms", "min_ms", "max_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "per_second", "requests", "bytes"})
	num := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	for _, s := range append(slices.Clone(r.Steps), r.Total) {
		w.Write([]string{s.Name, strconv.FormatInt(s.Count, 10), strconv.FormatInt(s.Failures, 10), num(s.FailedPct),
			num(s.AvgMs), num(s.MinMs), num(s.MaxMs), num(s.P50Ms), num(s.P90Ms), num(s.P95Ms), num(s.P99Ms), num(s.PerSecond),
			strconv.FormatInt(s.Requests, 10), strconv.FormatInt(s.Bytes, 10)})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return f.Close()
}

// chart is a series drawn as an inline SVG polyline.
type chart struct {
	Title  string
	Unit   string
	Points string
	Max    float64
	Width  int
	Height int
}

func makeChart(title, unit string, values []float64) chart {
	c := chart{Title: title, Unit: unit, Width: 640, Height: 160}
	for _, v := range values {
		c.Max = max(c.Max, v)
	}
	top := c.Max
	if top == 0 {
		top = 1
	}
	var pts []string
	n := max(len(values)-1, 1)
	for i, v := range values {
		x := float64(i) / float64(n) * float64(c.Width)
		y := float64(c.Height) - v/top*float64(c.Height-10)
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
	}
	c.Points = strings.Join(pts, " ")
	return c
}

var reportHTML = template.Must(template.New("report").Funcs(template.FuncMap{
	"mib": func(b int64) string { return strconv.FormatInt(b>>20, 10) },
}).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>bootfleet load report: {{.R.Scenario}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}.bad{color:#b00}
.charts{display:flex;flex-wrap:wrap;gap:1.5em}figure{margin:0}svg{background:#fafafa;border:1px solid #ddd}
polyline{fill:none;stroke:#2a6fdb;stroke-width:1.5}
</style></head><body>
<h1>{{.R.Scenario}}</h1>
<p>Target {{.R.Target}} · browser {{.R.Browser}} · started {{.R.Started.Format "2006-01-02 15:04:05 UTC"}} · {{.R.DurationS}} s ·
up to {{.R.Sessions}} sessions ({{.R.LostSessions}} lost) · {{.R.Iterations}} iterations ·
{{.R.HitsPerS}} steps/s · {{.R.Requests}} requests · {{.R.Bytes}} bytes · {{.R.WSReceived}} websocket messages received ({{.R.WSPerS}}/s), {{.R.WSSent}} sent</p>
{{range .R.Warnings}}<p class="bad"><strong>Warning:</strong> {{.}}</p>
{{end}}<p>Load generator: CPU avg {{.R.Generator.AvgCPUPct}}%, max {{.R.Generator.MaxCPUPct}}% of one core; PSS max {{.R.Generator.MaxPSSMiB}} MiB (runner and browsers){{if .R.Generator.HotSeconds}}; <span class="bad">hot {{.R.Generator.HotSeconds}} s</span>{{end}}.</p>
<h2>Browser options</h2>
{{if .R.Effects}}<ul>{{range .R.Effects}}<li>{{.}}</li>{{end}}</ul>{{if .R.BlockedRequests}}<p>{{.R.BlockedRequests}} requests blocked.</p>{{end}}{{else}}<p>None: the browser loaded and drew everything the pages asked for.</p>{{end}}
<h2>Steps</h2>
<table><tr><th>step</th><th>count</th><th>failures</th><th>%</th><th>avg ms</th><th>min</th><th>max</th><th>p50</th><th>p90</th><th>p95</th><th>p99</th><th>per s</th><th>requests</th><th>bytes</th></tr>
{{range .Rows}}<tr><td>{{.Name}}</td><td>{{.Count}}</td><td{{if .Failures}} class="bad"{{end}}>{{.Failures}}</td><td>{{.FailedPct}}</td><td>{{.AvgMs}}</td><td>{{.MinMs}}</td><td>{{.MaxMs}}</td><td>{{.P50Ms}}</td><td>{{.P90Ms}}</td><td>{{.P95Ms}}</td><td>{{.P99Ms}}</td><td>{{.PerSecond}}</td><td>{{.Requests}}</td><td>{{.Bytes}}</td></tr>
{{end}}</table>
{{if .Failures}}<h2>Failures</h2><table><tr><th>step</th><th>reason</th><th>count</th></tr>
{{range .Failures}}<tr><td>{{.Step}}</td><td style="text-align:left">{{.Reason}}</td><td>{{.Count}}</td></tr>{{end}}</table>{{end}}
{{if .R.Workers}}<h2>Workers</h2>
<table><tr><th>worker</th><th>node</th><th>state</th><th>sessions</th><th>steps</th><th>failures</th><th>lost sessions</th><th>peak CPU %</th><th>peak memory MiB</th><th>note</th></tr>
{{range .R.Workers}}<tr><td>{{.Worker}}</td><td>{{.Node}}</td><td{{if eq .State "lost"}} class="bad"{{end}}>{{.State}}</td><td>{{.FirstSession}}–{{.LastSession}}</td><td>{{.Steps}}</td><td>{{.Failures}}</td><td{{if .LostSessions}} class="bad"{{end}}>{{.LostSessions}}</td><td>{{printf "%.0f" .CPUPeakPercent}}</td><td>{{mib .MemoryPeakBytes}}</td><td style="text-align:left">{{if .Hot}}generator ran hot for {{.HotSeconds}} s: its figures may show its own saturation. {{end}}{{.Reason}}</td></tr>
{{end}}</table>{{end}}
<h2>HTTP responses</h2>
<table><tr><th>status</th><th>responses</th></tr>
{{range $k, $v := .R.HTTPStatuses}}<tr><td>{{$k}}</td><td>{{$v}}</td></tr>{{end}}</table>
<h2>Web Vitals</h2>
<table><tr><th>vital</th><th>navigations</th><th>p50</th><th>p75</th><th>p95</th></tr>
{{range $k, $v := .R.WebVitals}}<tr><td>{{$k}}</td><td>{{$v.Count}}</td><td>{{$v.P50}}</td><td>{{$v.P75}}</td><td>{{$v.P95}}</td></tr>{{end}}</table>
<p>TTFB, FCP and LCP in milliseconds; CLS unitless.</p>
<h2>Over time (one point per second)</h2>
<div class="charts">{{range .Charts}}<figure><figcaption>{{.Title}} (max {{printf "%.1f" .Max}} {{.Unit}})</figcaption>
<svg width="{{.Width}}" height="{{.Height}}" viewBox="0 0 {{.Width}} {{.Height}}" role="img" aria-label="{{.Title}}"><polyline points="{{.Points}}"/></svg></figure>{{end}}</div>
</body></html>
`))

func (r Report) writeHTML(path string) error {
	type failure struct {
		Step, Reason string
		Count        int64
	}
	var fails []failure
	for _, s := range r.Steps {
		for _, reason := range slices.Sorted(maps.Keys(s.Reasons)) {
			fails = append(fails, failure{s.Name, reason, s.Reasons[reason]})
		}
	}
	var steps, lat, sessions, ws, errs, genCPU, genPSS []float64
	for _, b := range r.Timeline {
		steps = append(steps, float64(b.Steps))
		avg := 0.0
		if b.Steps > 0 {
			avg = b.LatencySum / float64(b.Steps)
		}
		lat = append(lat, avg)
		sessions = append(sessions, float64(b.Sessions))
		ws = append(ws, float64(b.WSReceived))
		errs = append(errs, float64(b.Failures))
		genCPU = append(genCPU, b.GenCPU)
		genPSS = append(genPSS, b.GenPSSMiB)
	}
	data := struct {
		R        Report
		Rows     []StepReport
		Failures []failure
		Charts   []chart
	}{r, append(slices.Clone(r.Steps), r.Total), fails, []chart{
		makeChart("Steps per second", "steps/s", steps),
		makeChart("Mean step latency", "ms", lat),
		makeChart("Sessions", "sessions", sessions),
		makeChart("Websocket messages received per second", "msg/s", ws),
		makeChart("Failures per second", "failures/s", errs),
		makeChart("Load generator CPU (runner and browsers)", "% of one core", genCPU),
		makeChart("Load generator memory (PSS, runner and browsers)", "MiB", genPSS),
	}}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	defer f.Close()
	if err := reportHTML.Execute(f, data); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return f.Close()
}
