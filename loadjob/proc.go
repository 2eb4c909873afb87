package loadjob

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is Linux's USER_HZ, the unit of /proc/<pid>/stat's CPU times.
const clockTicks = 100

// procSample is the CPU time and resident memory of a process tree.
type procSample struct {
	at       time.Time
	cpuTicks int64
	rss      int64
}

// sampleTree sums CPU time and RSS over pid and its descendants (the
// worker and the browsers it started), from /proc.
func sampleTree(pid int) procSample {
	s := procSample{at: time.Now()}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	type proc struct {
		ppid       int
		ticks, rss int64
	}
	procs := map[int]proc{}
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// The command may hold spaces and parentheses: fields start after
		// the last ')'.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 22 {
			continue
		}
		id, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		ppid, _ := strconv.Atoi(f[1])
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		rss, _ := strconv.ParseInt(f[21], 10, 64)
		procs[id] = proc{ppid, ut + st, rss * int64(os.Getpagesize())}
	}
	in := map[int]bool{pid: true}
	for changed := true; changed; {
		changed = false
		for id, p := range procs {
			if !in[id] && in[p.ppid] {
				in[id], changed = true, true
			}
		}
	}
	for id := range in {
		if p, ok := procs[id]; ok {
			s.cpuTicks += p.ticks
			s.rss += p.rss
		}
	}
	return s
}

// cpuPercent is the tree's CPU use between two samples, in percent of one
// core (200 = two cores busy). Processes that ended in between take their
// time with them, so it never goes below 0.
func cpuPercent(prev, cur procSample) float64 {
	dt := cur.at.Sub(prev.at).Seconds()
	if dt <= 0 {
		return 0
	}
	return max(float64(cur.cpuTicks-prev.cpuTicks)/clockTicks/dt*100, 0)
}
