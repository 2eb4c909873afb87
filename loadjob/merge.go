package loadjob

import (
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"time"

	"github.com/bootfleet/bootfleet/load"
)

// merge decodes the workers' latest aggregates and merges them into one,
// aligned by wall-clock second. A lost worker's sessions end at its last
// aggregate; its whole share counts as lost sessions (what it ran before it
// was lost stays in the figures).
// lives are each worker's own live figures at the given time (before its
// sessions are ended), so callers decode each aggregate once.
func merge(j Job, ws []Worker, at time.Time) (merged *load.Aggregate, reports []load.WorkerReport, lives []load.Live, err error) {
	aggs := make([]*load.Aggregate, len(ws))
	var start time.Time
	for i, w := range ws {
		if len(w.Aggregate) == 0 {
			continue
		}
		a := &load.Aggregate{}
		if err := json.Unmarshal(w.Aggregate, a); err != nil {
			return nil, nil, nil, fmt.Errorf("loadjob: job %s worker %d: %w", j.ID, w.Worker, err)
		}
		aggs[i] = a
		if s := a.Started(); start.IsZero() || s.Before(start) {
			start = s
		}
	}
	if start.IsZero() {
		start = j.Created
	}
	merged = load.NewAggregate(start, j.Steps)
	reports = make([]load.WorkerReport, len(ws))
	lives = make([]load.Live, len(ws))
	for i, w := range ws {
		wr := load.WorkerReport{Worker: w.Worker, Node: w.Node, State: w.State, FirstSession: w.Offset + 1, LastSession: w.Offset + w.Sessions,
			Reason: w.Reason, CPUPeakPercent: math.Round(w.CPUPeakPercent*10) / 10, MemoryPeakBytes: w.MemoryPeakBytes, HotSeconds: w.HotSeconds, Hot: w.RanHot()}
		a := aggs[i]
		if a != nil {
			lives[i] = a.Live(at)
			wr.Steps, wr.Failures = lives[i].Steps, lives[i].Failures
			wr.LostSessions = a.LostSessions()
		}
		if w.State == WorkerLost {
			if a != nil {
				a.EndSessions(w.Updated)
				// The whole share is lost: count what the worker did not
				// already count as lost itself.
				a.Lost(int64(w.Sessions) - wr.LostSessions)
			} else {
				merged.Lost(int64(w.Sessions))
			}
			wr.LostSessions = int64(w.Sessions)
		}
		if a != nil {
			merged.Merge(a)
		}
		reports[i] = wr
	}
	return merged, reports, lives, nil
}

// MergedReport is the job's report from its workers' aggregates: the same
// contract as a local run's, with the workers listed.
func MergedReport(j Job, ws []Worker, now time.Time) (load.Report, error) {
	merged, reports, _, err := merge(j, ws, now)
	if err != nil {
		return load.Report{}, err
	}
	// The run ends at the last aggregate once every worker is done or
	// lost; while workers run, now.
	end, last, running := now, time.Time{}, false
	for _, w := range ws {
		if w.Updated.After(last) {
			last = w.Updated
		}
		running = running || w.State == WorkerRunning || w.State == WorkerPending
	}
	switch {
	case !running && !last.IsZero():
		end = last
	case !running && !j.Ended.IsZero():
		end = j.Ended
	}
	sc := &load.Scenario{Name: j.ScenarioName}
	if j.Target != "" {
		sc.Target, _ = url.Parse(j.Target)
	}
	browser := j.Browser
	if browser == "" {
		browser = "headless-shell"
	}
	r := merged.Report(sc, browser+" (distributed)", end)
	r.Workers = reports
	return r, nil
}

// WorkerStatus is one worker's live figures.
type WorkerStatus struct {
	Worker       int     `json:"worker"`
	State        string  `json:"state"`
	Node         string  `json:"node,omitempty"`
	Share        int     `json:"share"` // sessions it runs
	Sessions     int64   `json:"sessions"`
	Steps        int64   `json:"steps"`
	Failures     int64   `json:"failures"`
	StepsPerS    float64 `json:"steps_per_s"`
	P95Ms        float64 `json:"p95_ms"`
	CPUPercent   float64 `json:"cpu_percent"`
	MemoryBytes  int64   `json:"memory_bytes"`
	Hot          bool    `json:"hot,omitempty"`
	SinceUpdateS float64 `json:"since_update_s"`
	Reason       string  `json:"reason,omitempty"`
}

// Status is a job's merged live figures.
type Status struct {
	Job          Job            `json:"job"`
	ElapsedS     float64        `json:"elapsed_s"`
	Sessions     int64          `json:"sessions"`
	Steps        int64          `json:"steps"`
	Failures     int64          `json:"failures"`
	StepsPerS    float64        `json:"steps_per_s"`
	P95Ms        float64        `json:"p95_ms"`
	WSReceived   int64          `json:"ws_received"`
	LostSessions int64          `json:"lost_sessions"`
	Hot          bool           `json:"hot,omitempty"` // some generator runs hot
	Workers      []WorkerStatus `json:"workers"`
}

// JobStatus merges the workers' latest aggregates into live figures. The
// steps per second are those of the last full second every worker has
// reported (a second behind now).
func JobStatus(j Job, ws []Worker, now time.Time) (Status, error) {
	at := now.Add(-time.Second)
	merged, _, lives, err := merge(j, ws, at)
	if err != nil {
		return Status{}, err
	}
	l := merged.Live(at)
	st := Status{Job: j.Public(), ElapsedS: math.Round(now.Sub(j.Created).Seconds()*10) / 10, Sessions: l.Sessions, Steps: l.Steps,
		Failures: l.Failures, StepsPerS: l.StepsPerS, P95Ms: float64(l.P95.Microseconds()) / 1000, WSReceived: l.WSReceived,
		LostSessions: merged.LostSessions()}
	for i, w := range ws {
		ws := WorkerStatus{Worker: w.Worker, State: w.State, Node: w.Node, Share: w.Sessions, CPUPercent: math.Round(w.CPUPercent*10) / 10,
			MemoryBytes: w.MemoryBytes, Hot: w.Hot(), Reason: w.Reason}
		if !w.Updated.IsZero() && w.State == WorkerRunning {
			ws.SinceUpdateS = math.Round(now.Sub(w.Updated).Seconds()*10) / 10
		}
		if len(w.Aggregate) > 0 {
			wl := lives[i]
			ws.Sessions, ws.Steps, ws.Failures, ws.StepsPerS = wl.Sessions, wl.Steps, wl.Failures, wl.StepsPerS
			ws.P95Ms = float64(wl.P95.Microseconds()) / 1000
			if w.State != WorkerRunning {
				ws.Sessions = 0
			}
		}
		st.Hot = st.Hot || ws.Hot
		st.Workers = append(st.Workers, ws)
	}
	return st, nil
}
