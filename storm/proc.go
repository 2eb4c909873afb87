package storm

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// procSample is one reading of a process's CPU ticks, RSS and threads.
type procSample struct {
	at      time.Time
	ticks   int64 // utime + stime, in clock ticks
	rssKiB  int64
	threads int
}

// clockTicks is USER_HZ, 100 on Linux for every architecture Go supports.
const clockTicks = 100

func readProc(pid int) (procSample, error) {
	s := procSample{at: time.Now()}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return s, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 18 {
		return s, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	// f[0] is field 3 (state): utime is field 14, stime 15, threads 20.
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	s.ticks = ut + st
	s.threads, _ = strconv.Atoi(f[17])
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			s.rssKiB, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return s, nil
}

// sampleProc reads pid every interval until ctx ends and returns the usage.
func sampleProc(ctx context.Context, pid int, interval time.Duration) (*ServerUsage, error) {
	first, err := readProc(pid)
	if err != nil {
		return nil, fmt.Errorf("server process %d: %w", pid, err)
	}
	u := &ServerUsage{PID: pid, StartRSSMiB: float64(first.rssKiB) / 1024, PeakRSSMiB: float64(first.rssKiB) / 1024, PeakThreads: first.threads}
	prev, last := first, first
	t := time.NewTicker(interval)
	defer t.Stop()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
			continue
		case <-t.C:
		}
		s, err := readProc(pid)
		if err != nil {
			continue
		}
		u.Samples++
		// CPU peaks over windows of a second at least: ticks come in
		// 10 ms steps, and a late sample over a short window misleads.
		if dt := s.at.Sub(prev.at).Seconds(); dt >= 1 {
			u.PeakCPUPct = max(u.PeakCPUPct, float64(s.ticks-prev.ticks)/clockTicks/dt*100)
			prev = s
		}
		u.PeakRSSMiB = max(u.PeakRSSMiB, float64(s.rssKiB)/1024)
		u.PeakThreads = max(u.PeakThreads, s.threads)
		last = s
	}
	window := last.at.Sub(first.at)
	u.CPUSeconds = float64(last.ticks-first.ticks) / clockTicks
	if window > 0 {
		u.AvgCPUPct = u.CPUSeconds / window.Seconds() * 100
	}
	u.EndRSSMiB = float64(last.rssKiB) / 1024
	u.SampleWindow = window.Round(10 * time.Millisecond).String()
	return u, nil
}
