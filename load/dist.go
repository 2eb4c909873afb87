package load

import "time"

// WorkerReport is one worker of a distributed run, as its report lists
// it: which sessions it ran, and when it was lost, which of them were lost.
type WorkerReport struct {
	Worker int    `json:"worker"`
	Node   string `json:"node,omitempty"`
	State  string `json:"state"` // done, lost, or running/pending in a live report
	// FirstSession and LastSession: the sessions of its share.
	FirstSession int    `json:"first_session"`
	LastSession  int    `json:"last_session"`
	Steps        int64  `json:"steps"`
	Failures     int64  `json:"failures"`
	LostSessions int64  `json:"lost_sessions"`
	Reason       string `json:"reason,omitempty"`
	// CPUPeakPercent and MemoryPeakBytes: the most the generator (worker
	// and its browsers) used in one second, CPU in % of one core.
	CPUPeakPercent  float64 `json:"cpu_peak_percent"`
	MemoryPeakBytes int64   `json:"memory_peak_bytes"`
	// HotSeconds the generator ran near its CPU limit; Hot when that was
	// long enough that its figures may show its own saturation.
	HotSeconds int  `json:"hot_seconds,omitempty"`
	Hot        bool `json:"hot,omitempty"`
}

// LostSessions is how many sessions ended early (their browser died).
func (a *Aggregate) LostSessions() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lost
}

// EndSessions ends the sessions still running at t: a lost worker's
// sessions do not run on in the merged timeline after its last word.
func (a *Aggregate) EndSessions(t time.Time) {
	a.mu.Lock()
	n := a.sessions
	a.mu.Unlock()
	if n != 0 {
		a.Sessions(t, -n)
	}
}

// Started is when the aggregate's time buckets start.
func (a *Aggregate) Started() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.start
}
