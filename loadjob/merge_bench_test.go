package loadjob

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/bootfleet/bootfleet/load"
)

// BenchmarkJobStatus merges the latest aggregates of 10 workers, each 5
// minutes into a run of 5 steps with 300 one-second buckets: what the
// server does for every load status call and every finished job.
func BenchmarkJobStatus(b *testing.B) {
	start := time.Now().Add(-5 * time.Minute)
	steps := []string{"open", "login", "click", "wait", "messages"}
	j := Job{ID: "bench", Steps: steps, Sessions: 1000, Workers: 10, Created: start}
	var ws []Worker
	size := 0
	for w := range 10 {
		a := load.NewAggregate(start.Add(time.Duration(w)*100*time.Millisecond), steps)
		a.Sessions(start, 100)
		for i := range 30000 {
			at := start.Add(time.Duration(i) * 10 * time.Millisecond)
			reason := ""
			if i%97 == 0 {
				reason = fmt.Sprintf("reason %d", i%5)
			}
			a.Step(steps[i%5], at, time.Duration(5+i%400)*time.Millisecond, reason)
		}
		raw, err := json.Marshal(a)
		if err != nil {
			b.Fatal(err)
		}
		size += len(raw)
		sh := j.ShareOf(w)
		ws = append(ws, Worker{Worker: w, State: WorkerRunning, Offset: sh.Offset, Sessions: sh.Sessions, Updated: time.Now(), Aggregate: raw})
	}
	for b.Loop() {
		if _, err := JobStatus(j, ws, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(size)/10, "bytes/worker-aggregate")
}
