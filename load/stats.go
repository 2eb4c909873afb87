package load

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Histograms record microseconds from 1 µs to 10 min at 3 significant
// digits: a few tens of KiB each, whatever the number of samples.
const (
	histMin    = 1
	histMax    = int64(10 * time.Minute / time.Microsecond)
	histDigits = 3
	// maxReasons bounds the distinct failure reasons kept per step.
	maxReasons = 20
)

func newHist() *hdr.Histogram { return hdr.New(histMin, histMax, histDigits) }

// StepStats aggregates one step's runs.
type StepStats struct {
	Count    int64
	Failures int64
	Latency  *hdr.Histogram // successful and failed runs, µs
	Reasons  map[string]int64
	// Requests and Bytes the browser loaded while the step ran (a
	// navigation's page and resources).
	Requests int64
	Bytes    int64
}

// Bucket is one second of the run.
type Bucket struct {
	Second     int64   `json:"second"` // since the start of the run
	Steps      int64   `json:"steps"`
	Failures   int64   `json:"failures"`
	Sessions   int64   `json:"sessions"` // running at the end of the second
	LatencySum float64 `json:"latency_sum_ms"`
	LatencyMax float64 `json:"latency_max_ms"`
	Requests   int64   `json:"requests"`
	Bytes      int64   `json:"bytes"`
	WSSent     int64   `json:"ws_sent"`
	WSReceived int64   `json:"ws_received"`
	Blocked    int64   `json:"blocked,omitempty"` // requests refused (browser.block)
	// The load generators' own usage (runner and browsers) in this second,
	// summed over generators: CPU in percent of one core, PSS in MiB, and
	// how many ran hot (Report.Warnings).
	GenCPU    float64 `json:"generator_cpu_pct"`
	GenPSSMiB float64 `json:"generator_pss_mib"`
	GenHot    int64   `json:"generator_hot,omitempty"`
}

// Aggregate is everything a run (or a worker's share of one) measured,
// bounded in memory: an HDR histogram per step and per Web Vital, and one
// bucket per second of the run, never raw samples. Aggregates merge, and
// an Aggregate is JSON (its histograms in the HdrHistogram V2 compressed
// encoding), so a distributed run's workers can stream theirs to the
// server: each worker sends its whole aggregate every second, the server
// keeps the latest per worker and merges them for live figures and the
// report.
type Aggregate struct {
	mu       sync.Mutex
	start    time.Time
	steps    map[string]*StepStats
	order    []string                  // step names in scenario order
	buckets  []Bucket                  // index = second since start
	vitals   map[string]*hdr.Histogram // ttfb, fcp, lcp (µs), cls (×10⁶)
	statuses map[int64]int64           // HTTP responses by status (0: outside 100–599)
	sessions int64
	maxSess  int64
	lost     int64 // sessions that ended early (browser crashed, node lost)
	iters    int64
}

// maxBuckets bounds the time buckets (and a wire aggregate's): a week of
// seconds.
const maxBuckets = 7 * 24 * 3600

// NewAggregate starts an aggregate whose time buckets count from start.
func NewAggregate(start time.Time, stepNames []string) *Aggregate {
	a := &Aggregate{start: start, steps: map[string]*StepStats{}, vitals: map[string]*hdr.Histogram{}, statuses: map[int64]int64{}}
	for _, n := range stepNames {
		a.stepLocked(n)
	}
	return a
}

func (a *Aggregate) stepLocked(name string) *StepStats {
	s, ok := a.steps[name]
	if !ok {
		s = &StepStats{Latency: newHist(), Reasons: map[string]int64{}}
		a.steps[name] = s
		a.order = append(a.order, name)
	}
	return s
}

// growLocked makes buckets 0..sec exist; new seconds carry the running
// sessions of the last one.
func (a *Aggregate) growLocked(sec int64) {
	for int64(len(a.buckets)) <= sec {
		b := Bucket{Second: int64(len(a.buckets)), Sessions: a.sessions}
		if n := len(a.buckets); n > 0 {
			b.Sessions = a.buckets[n-1].Sessions
		}
		a.buckets = append(a.buckets, b)
	}
}

func (a *Aggregate) bucketLocked(t time.Time) *Bucket {
	sec := min(max(int64(t.Sub(a.start)/time.Second), 0), maxBuckets-1)
	a.growLocked(sec)
	return &a.buckets[sec]
}

// Step records one run of a step; reason is "" for a success.
func (a *Aggregate) Step(name string, at time.Time, took time.Duration, reason string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.stepLocked(name)
	s.Count++
	_ = s.Latency.RecordValue(min(max(took.Microseconds(), histMin), histMax))
	b := a.bucketLocked(at)
	b.Steps++
	ms := float64(took) / float64(time.Millisecond)
	b.LatencySum += ms
	b.LatencyMax = max(b.LatencyMax, ms)
	if reason != "" {
		s.Failures++
		b.Failures++
		s.addReason(reason, 1)
	}
}

// StepTraffic adds what the browser loaded during a run of a step.
func (a *Aggregate) StepTraffic(name string, requests, bytes int64) {
	if requests == 0 && bytes == 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.stepLocked(name)
	s.Requests += requests
	s.Bytes += bytes
}

// Response counts an HTTP response the browsers received, by status.
func (a *Aggregate) Response(status int64) {
	if status < 100 || status > 599 {
		status = 0
	}
	a.mu.Lock()
	a.statuses[status]++
	a.mu.Unlock()
}

// addReason counts a failure reason, keeping at most maxReasons apart.
func (s *StepStats) addReason(reason string, n int64) {
	if _, ok := s.Reasons[reason]; ok || len(s.Reasons) < maxReasons {
		s.Reasons[reason] += n
	} else {
		s.Reasons[otherReasons] += n
	}
}

const otherReasons = "(other reasons)"

// Traffic records what the browsers sent and received.
func (a *Aggregate) Traffic(at time.Time, requests, bytes, wsSent, wsReceived int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	b := a.bucketLocked(at)
	b.Requests += requests
	b.Bytes += bytes
	b.WSSent += wsSent
	b.WSReceived += wsReceived
}

// vitalScale converts a Web Vital to the histogram's integers: ms → µs,
// CLS (unitless) × 10⁶.
func vitalScale(name string) float64 {
	if name == "cls" {
		return 1e6
	}
	return 1000
}

// Vital records a Web Vital of a navigation: ttfb, fcp and lcp in
// milliseconds, cls unitless.
func (a *Aggregate) Vital(name string, value float64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	h, ok := a.vitals[name]
	if !ok {
		h = newHist()
		a.vitals[name] = h
	}
	_ = h.RecordValue(min(max(int64(value*vitalScale(name)), histMin), histMax))
}

// Sessions moves the count of running sessions by delta.
func (a *Aggregate) Sessions(at time.Time, delta int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sessions += delta
	a.maxSess = max(a.maxSess, a.sessions)
	b := a.bucketLocked(at)
	b.Sessions = a.sessions
	// Later seconds already made (by a late event) carry the new count.
	for i := b.Second + 1; i < int64(len(a.buckets)); i++ {
		a.buckets[i].Sessions += delta
	}
}

// Iteration counts one finished pass through the steps.
func (a *Aggregate) Iteration() {
	a.mu.Lock()
	a.iters++
	a.mu.Unlock()
}

// Lost counts a session that ended before its time (its browser died).
func (a *Aggregate) Lost(n int64) {
	a.mu.Lock()
	a.lost += n
	a.mu.Unlock()
}

// Merge adds another aggregate into a: steps by name, time buckets by
// wall-clock second (o may have started a little later or earlier, as
// workers of one run do), Web Vitals, sessions and iterations. The peak of
// sessions becomes the highest sum of running sessions seen in one second.
func (a *Aggregate) Merge(o *Aggregate) {
	if a == o {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, name := range o.order {
		s, os := a.stepLocked(name), o.steps[name]
		s.Count += os.Count
		s.Failures += os.Failures
		s.Requests += os.Requests
		s.Bytes += os.Bytes
		s.Latency.Merge(os.Latency)
		for _, r := range slices.Sorted(maps.Keys(os.Reasons)) {
			s.addReason(r, os.Reasons[r])
		}
	}
	// o's second i is a's second i+shift.
	shift := int64(o.start.Sub(a.start).Round(time.Second) / time.Second)
	if n := len(o.buckets); n > 0 {
		last := min(max(int64(n-1)+shift, 0), maxBuckets-1)
		a.growLocked(last)
	}
	// Seconds of a after o's last one still have o's last sessions running.
	oSessions := func(sec int64) int64 {
		i := sec - shift
		switch {
		case i < 0 || len(o.buckets) == 0:
			return 0
		case i >= int64(len(o.buckets)):
			return o.buckets[len(o.buckets)-1].Sessions
		}
		return o.buckets[i].Sessions
	}
	for i := range a.buckets {
		a.buckets[i].Sessions += oSessions(int64(i))
	}
	for _, ob := range o.buckets {
		sec := min(max(ob.Second+shift, 0), maxBuckets-1)
		b := &a.buckets[sec]
		b.Steps += ob.Steps
		b.Failures += ob.Failures
		b.LatencySum += ob.LatencySum
		b.LatencyMax = max(b.LatencyMax, ob.LatencyMax)
		b.Requests += ob.Requests
		b.Bytes += ob.Bytes
		b.WSSent += ob.WSSent
		b.WSReceived += ob.WSReceived
		b.Blocked += ob.Blocked
		b.GenCPU += ob.GenCPU
		b.GenPSSMiB += ob.GenPSSMiB
		b.GenHot += ob.GenHot
	}
	for st, n := range o.statuses {
		a.statuses[st] += n
	}
	for n, h := range o.vitals {
		if _, ok := a.vitals[n]; !ok {
			a.vitals[n] = newHist()
		}
		a.vitals[n].Merge(h)
	}
	a.maxSess = max(a.maxSess, o.maxSess)
	for _, b := range a.buckets {
		a.maxSess = max(a.maxSess, b.Sessions)
	}
	a.sessions += o.sessions
	a.lost += o.lost
	a.iters += o.iters
}

// aggregateJSON is the wire form of an Aggregate.
type aggregateJSON struct {
	Start       time.Time           `json:"start"`
	Steps       []stepJSON          `json:"steps"`
	Buckets     []Bucket            `json:"buckets"`
	Vitals      map[string]histJSON `json:"web_vitals,omitempty"`
	Statuses    map[int64]int64     `json:"http_responses,omitempty"`
	Sessions    int64               `json:"sessions"`
	MaxSessions int64               `json:"max_sessions"`
	Lost        int64               `json:"lost_sessions"`
	Iterations  int64               `json:"iterations"`
}

type stepJSON struct {
	Name     string           `json:"name"`
	Count    int64            `json:"count"`
	Failures int64            `json:"failures"`
	Latency  histJSON         `json:"latency_us"`
	Reasons  map[string]int64 `json:"reasons,omitempty"`
	Requests int64            `json:"requests,omitempty"`
	Bytes    int64            `json:"bytes,omitempty"`
}

// histJSON is a histogram in the HdrHistogram V2 compressed encoding
// (base64, as in HdrHistogram's log files).
type histJSON []byte

func encodeHist(h *hdr.Histogram) (histJSON, error) {
	return h.Encode(hdr.V2CompressedEncodingCookieBase)
}

func decodeHist(b histJSON) (*hdr.Histogram, error) {
	h, err := hdr.Decode(b)
	if err != nil {
		return nil, err
	}
	// Values outside our range would be dropped on Merge; refuse them.
	if h.LowestTrackableValue() != histMin || h.HighestTrackableValue() != histMax || h.SignificantFigures() != histDigits {
		return nil, fmt.Errorf("histogram of range %d–%d at %d digits, want %d–%d at %d",
			h.LowestTrackableValue(), h.HighestTrackableValue(), h.SignificantFigures(), histMin, histMax, histDigits)
	}
	return h, nil
}

// MarshalJSON encodes the aggregate for a worker's stream to the server.
func (a *Aggregate) MarshalJSON() ([]byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	w := aggregateJSON{Start: a.start, Buckets: a.buckets, Vitals: map[string]histJSON{}, Statuses: a.statuses,
		Sessions: a.sessions, MaxSessions: a.maxSess, Lost: a.lost, Iterations: a.iters}
	for _, name := range a.order {
		s := a.steps[name]
		h, err := encodeHist(s.Latency)
		if err != nil {
			return nil, fmt.Errorf("load: step %s: %w", name, err)
		}
		w.Steps = append(w.Steps, stepJSON{Name: name, Count: s.Count, Failures: s.Failures, Latency: h, Reasons: s.Reasons,
			Requests: s.Requests, Bytes: s.Bytes})
	}
	for name, v := range a.vitals {
		h, err := encodeHist(v)
		if err != nil {
			return nil, fmt.Errorf("load: web vital %s: %w", name, err)
		}
		w.Vitals[name] = h
	}
	return json.Marshal(w)
}

// UnmarshalJSON decodes an aggregate a worker sent, checking it so that a
// bad one cannot make the server's memory grow or its report lie.
func (a *Aggregate) UnmarshalJSON(b []byte) error {
	var w aggregateJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("load: aggregate: %w", err)
	}
	if len(w.Buckets) > maxBuckets {
		return fmt.Errorf("load: aggregate: %d time buckets, at most %d", len(w.Buckets), maxBuckets)
	}
	n := NewAggregate(w.Start, nil)
	for i, bk := range w.Buckets {
		if bk.Second != int64(i) {
			return fmt.Errorf("load: aggregate: bucket %d says second %d", i, bk.Second)
		}
	}
	n.buckets = w.Buckets
	for _, s := range w.Steps {
		if _, dup := n.steps[s.Name]; dup {
			return fmt.Errorf("load: aggregate: step %q twice", s.Name)
		}
		if len(s.Reasons) > maxReasons+1 {
			return fmt.Errorf("load: aggregate: step %q has %d failure reasons, at most %d", s.Name, len(s.Reasons), maxReasons+1)
		}
		if s.Count < 0 || s.Failures < 0 || s.Failures > s.Count {
			return fmt.Errorf("load: aggregate: step %q: %d failures of %d runs", s.Name, s.Failures, s.Count)
		}
		h, err := decodeHist(s.Latency)
		if err != nil {
			return fmt.Errorf("load: aggregate: step %q: %w", s.Name, err)
		}
		st := n.stepLocked(s.Name)
		st.Count, st.Failures, st.Latency, st.Requests, st.Bytes = s.Count, s.Failures, h, s.Requests, s.Bytes
		maps.Copy(st.Reasons, s.Reasons)
	}
	for name, v := range w.Vitals {
		if !slices.Contains(vitalNames, name) {
			return fmt.Errorf("load: aggregate: unknown web vital %q", name)
		}
		h, err := decodeHist(v)
		if err != nil {
			return fmt.Errorf("load: aggregate: web vital %s: %w", name, err)
		}
		n.vitals[name] = h
	}
	if len(w.Statuses) > 501 {
		return fmt.Errorf("load: aggregate: %d HTTP statuses", len(w.Statuses))
	}
	for st, c := range w.Statuses {
		if st != 0 && (st < 100 || st > 599) {
			return fmt.Errorf("load: aggregate: HTTP status %d", st)
		}
		n.statuses[st] = c
	}
	n.sessions, n.maxSess, n.lost, n.iters = w.Sessions, w.MaxSessions, w.Lost, w.Iterations
	a.mu.Lock()
	defer a.mu.Unlock()
	a.start, a.steps, a.order, a.buckets, a.vitals, a.statuses = n.start, n.steps, n.order, n.buckets, n.vitals, n.statuses
	a.sessions, a.maxSess, a.lost, a.iters = n.sessions, n.maxSess, n.lost, n.iters
	return nil
}

// vitalNames are the Web Vitals measured per navigation.
var vitalNames = []string{"ttfb", "fcp", "lcp", "cls"}

// Live is a snapshot for the progress line.
type Live struct {
	Elapsed    time.Duration
	Sessions   int64
	Steps      int64
	Failures   int64
	StepsPerS  float64 // over the last full second
	P95        time.Duration
	WSReceived int64
	// The generator's own CPU (% of one core) and PSS (MiB) in the last
	// full second, and whether it ran hot then.
	GenCPU    float64
	GenPSSMiB float64
	Hot       bool
}

// Live summarises the run so far.
func (a *Aggregate) Live(now time.Time) Live {
	a.mu.Lock()
	defer a.mu.Unlock()
	l := Live{Elapsed: now.Sub(a.start), Sessions: a.sessions}
	all := newHist()
	for _, s := range a.steps {
		l.Steps += s.Count
		l.Failures += s.Failures
		all.Merge(s.Latency)
	}
	l.P95 = time.Duration(all.ValueAtQuantile(95)) * time.Microsecond
	if sec := int64(now.Sub(a.start)/time.Second) - 1; sec >= 0 && sec < int64(len(a.buckets)) {
		b := a.buckets[sec]
		l.StepsPerS = float64(b.Steps)
		l.GenCPU, l.GenPSSMiB, l.Hot = b.GenCPU, b.GenPSSMiB, b.GenHot > 0
	}
	for _, b := range a.buckets {
		l.WSReceived += b.WSReceived
	}
	return l
}
