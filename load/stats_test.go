package load

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// worker fills an aggregate as a runner would: sessions, steps with a
// failure, traffic and a Web Vital.
func worker(start time.Time, sessions int, ms time.Duration) *Aggregate {
	a := NewAggregate(start, []string{"open", "login"})
	for i := range sessions {
		a.Sessions(start.Add(time.Duration(i)*time.Second), 1)
	}
	for i := range 100 {
		at := start.Add(time.Duration(i) * 30 * time.Millisecond)
		a.Step("open", at, ms+time.Duration(i)*time.Millisecond, "")
		reason := ""
		if i%10 == 0 {
			reason = "HTTP 500"
		}
		a.Step("login", at, 2*ms, reason)
		a.Traffic(at, 1, 1000, 1, 10)
	}
	a.Vital("ttfb", float64(ms/time.Millisecond))
	a.Vital("cls", 0.05)
	a.Iteration()
	return a
}

func TestAggregateJSONRoundTrip(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a := worker(start, 3, 20*time.Millisecond)
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 16<<10 {
		t.Errorf("a 2-step aggregate is %d bytes of JSON; a worker sends one every second", len(b))
	}
	var back Aggregate
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	sc := &Scenario{Name: "s"}
	end := start.Add(10 * time.Second)
	if diff := cmp.Diff(a.Report(sc, "x", end), back.Report(sc, "x", end)); diff != "" {
		t.Errorf("report after a JSON round trip (-before +after):\n%s", diff)
	}
}

func TestAggregateUnmarshalRejects(t *testing.T) {
	good, _ := json.Marshal(worker(time.Now(), 1, time.Millisecond))
	for name, edit := range map[string]func(string) string{
		"not json":            func(string) string { return "{" },
		"bad histogram":       func(s string) string { return strings.Replace(s, `"latency_us":"`, `"latency_us":"AAAA`, 1) },
		"bucket out of order": func(s string) string { return strings.Replace(s, `"second":0`, `"second":7`, 1) },
		"more failures than runs": func(s string) string {
			return strings.Replace(s, `"failures":10`, `"failures":1000`, 1)
		},
		"unknown vital": func(s string) string { return strings.Replace(s, `"cls":`, `"xyz":`, 1) },
	} {
		t.Run(name, func(t *testing.T) {
			var a Aggregate
			if err := json.Unmarshal([]byte(edit(string(good))), &a); err == nil {
				t.Errorf("accepted %s", name)
			}
		})
	}
}

func TestAggregateMerge(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	// Two workers of one run; the second started 2 s later. The server
	// merges what came over the wire.
	w1, w2 := worker(start, 2, 10*time.Millisecond), worker(start.Add(2*time.Second), 3, 30*time.Millisecond)
	total := NewAggregate(start, nil)
	for _, w := range []*Aggregate{w1, w2} {
		b, err := json.Marshal(w)
		if err != nil {
			t.Fatal(err)
		}
		var got Aggregate
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		total.Merge(&got)
	}
	r := total.Report(&Scenario{Name: "s"}, "x", start.Add(10*time.Second))
	if got := fmt.Sprintf("%s %d %s %d %d", r.Steps[0].Name, r.Steps[0].Count, r.Steps[1].Name, r.Steps[1].Count, r.Steps[1].Failures); got != "open 200 login 200 20" {
		t.Errorf("merged steps: %s", got)
	}
	if r.Steps[1].Reasons["HTTP 500"] != 20 {
		t.Errorf("merged reasons: %v", r.Steps[1].Reasons)
	}
	// Worker 1's steps fill seconds 0–2, worker 2's seconds 2–4.
	var steps []int64
	for _, b := range r.Timeline {
		steps = append(steps, b.Steps)
	}
	if want := []int64{68, 66, 134, 66, 66}; !cmp.Equal(steps, want) {
		t.Errorf("steps per second %v, want %v", steps, want)
	}
	// Sessions: worker 1 has 1 then 2 running from second 1; worker 2
	// starts its 3 at seconds 2, 3 and 4.
	var sess []int64
	for _, b := range r.Timeline {
		sess = append(sess, b.Sessions)
	}
	if want := []int64{1, 2, 3, 4, 5}; !cmp.Equal(sess, want) {
		t.Errorf("sessions per second %v, want %v", sess, want)
	}
	if r.Sessions != 5 || r.Iterations != 2 || r.Requests != 200 || r.WSReceived != 2000 {
		t.Errorf("merged totals: sessions %d iterations %d requests %d ws %d", r.Sessions, r.Iterations, r.Requests, r.WSReceived)
	}
	if v := r.WebVitals["ttfb"]; v.Count != 2 || math.Abs(v.P50-10) > 0.1 || math.Abs(v.P95-30) > 0.1 {
		t.Errorf("merged TTFB: %+v", v)
	}
	if r.Total.MinMs != 10 || r.Total.MaxMs < 129 || r.Total.MaxMs > 130 {
		t.Errorf("merged latency: %+v", r.Total)
	}
}
