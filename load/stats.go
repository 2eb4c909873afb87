package load

import (
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
}

// Aggregate is everything a run (or a worker's share of one) measured,
// bounded in memory. Aggregates merge, so workers' can be summed.
type Aggregate struct {
	mu       sync.Mutex
	start    time.Time
	steps    map[string]*StepStats
	order    []string // step names in scenario order
	buckets  map[int64]*Bucket
	vitals   map[string]*hdr.Histogram // ttfb, fcp, lcp (µs), cls (×10⁶)
	sessions int64
	maxSess  int64
	lost     int64 // sessions that ended early (browser crashed, node lost)
	iters    int64
}

// NewAggregate starts an aggregate whose time buckets count from start.
func NewAggregate(start time.Time, stepNames []string) *Aggregate {
	a := &Aggregate{start: start, steps: map[string]*StepStats{}, buckets: map[int64]*Bucket{}, vitals: map[string]*hdr.Histogram{}}
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

func (a *Aggregate) bucketLocked(t time.Time) *Bucket {
	sec := int64(t.Sub(a.start) / time.Second)
	b, ok := a.buckets[sec]
	if !ok {
		b = &Bucket{Second: sec, Sessions: a.sessions}
		a.buckets[sec] = b
	}
	return b
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
		if _, ok := s.Reasons[reason]; ok || len(s.Reasons) < maxReasons {
			s.Reasons[reason]++
		} else {
			s.Reasons["(other reasons)"]++
		}
	}
}

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
	scale := 1000.0 // ms → µs
	if name == "cls" {
		scale = 1e6
	}
	_ = h.RecordValue(min(max(int64(value*scale), histMin), histMax))
}

// Sessions moves the count of running sessions by delta.
func (a *Aggregate) Sessions(at time.Time, delta int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sessions += delta
	a.maxSess = max(a.maxSess, a.sessions)
	a.bucketLocked(at).Sessions = a.sessions
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

// Merge adds another aggregate (of the same run: same start) into a.
func (a *Aggregate) Merge(o *Aggregate) {
	o.mu.Lock()
	defer o.mu.Unlock()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, name := range o.order {
		s, os := a.stepLocked(name), o.steps[name]
		s.Count += os.Count
		s.Failures += os.Failures
		s.Latency.Merge(os.Latency)
		for r, n := range os.Reasons {
			s.Reasons[r] += n
		}
	}
	for sec, ob := range o.buckets {
		b, ok := a.buckets[sec]
		if !ok {
			b = &Bucket{Second: sec}
			a.buckets[sec] = b
		}
		b.Steps += ob.Steps
		b.Failures += ob.Failures
		b.Sessions += ob.Sessions
		b.LatencySum += ob.LatencySum
		b.LatencyMax = max(b.LatencyMax, ob.LatencyMax)
		b.Requests += ob.Requests
		b.Bytes += ob.Bytes
		b.WSSent += ob.WSSent
		b.WSReceived += ob.WSReceived
	}
	for n, h := range o.vitals {
		if _, ok := a.vitals[n]; !ok {
			a.vitals[n] = newHist()
		}
		a.vitals[n].Merge(h)
	}
	a.maxSess += o.maxSess
	a.lost += o.lost
	a.iters += o.iters
}

// Live is a snapshot for the progress line.
type Live struct {
	Elapsed    time.Duration
	Sessions   int64
	Steps      int64
	Failures   int64
	StepsPerS  float64 // over the last full second
	P95        time.Duration
	WSReceived int64
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
	if b, ok := a.buckets[int64(now.Sub(a.start)/time.Second)-1]; ok {
		l.StepsPerS = float64(b.Steps)
	}
	for _, b := range a.buckets {
		l.WSReceived += b.WSReceived
	}
	return l
}

// sortedBuckets returns the buckets in time order, with empty seconds
// filled in.
func (a *Aggregate) sortedBuckets() []Bucket {
	if len(a.buckets) == 0 {
		return nil
	}
	keys := slices.Sorted(maps.Keys(a.buckets))
	out := make([]Bucket, 0, keys[len(keys)-1]+1)
	last := int64(0)
	for sec := int64(0); sec <= keys[len(keys)-1]; sec++ {
		if b, ok := a.buckets[sec]; ok {
			out = append(out, *b)
			last = b.Sessions
		} else {
			out = append(out, Bucket{Second: sec, Sessions: last})
		}
	}
	return out
}
