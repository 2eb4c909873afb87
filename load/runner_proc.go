package load

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// clockTicks is Linux's USER_HZ, the unit of CPU times in /proc.
const clockTicks = 100

// Usage is what a process tree used over one sampling interval.
type Usage struct {
	CPUPercent  float64 // of one core, over the interval
	PSS         int64   // bytes, summed over the tree's processes now
	Processes   int
	MachineBusy float64 // percent of all cores busy on the machine (any process)
}

// TreeSampler measures a process and all its descendants (a runner and
// its browsers with their zygotes, renderers and utility processes) from
// /proc: CPU from each process's utime+stime, memory as the sum of PSS
// from /proc/PID/smaps_rollup, so that pages the processes share are
// counted once.
type TreeSampler struct {
	Root                int
	last                map[int]uint64 // CPU ticks per pid at the last sample
	lastAt              time.Time
	lastBusy, lastTotal uint64
}

// Sample measures the tree now; CPU is over the time since the last
// call (zero on the first).
func (t *TreeSampler) Sample() (Usage, error) {
	now := time.Now()
	procs, err := processTree(t.Root)
	if err != nil {
		return Usage{}, err
	}
	u := Usage{Processes: len(procs)}
	cur := make(map[int]uint64, len(procs))
	var ticks uint64
	for pid, cpu := range procs {
		cur[pid] = cpu
		prev, seen := t.last[pid]
		switch {
		case t.last == nil:
		case !seen: // started since the last sample
			ticks += cpu
		case cpu >= prev:
			ticks += cpu - prev
		}
		u.PSS += pss(pid)
	}
	if !t.lastAt.IsZero() {
		if dt := now.Sub(t.lastAt).Seconds(); dt > 0 {
			u.CPUPercent = float64(ticks) / clockTicks / dt * 100
		}
	}
	if busy, total, err := machineCPU(); err == nil {
		if t.lastTotal > 0 && total > t.lastTotal {
			u.MachineBusy = float64(busy-t.lastBusy) / float64(total-t.lastTotal) * 100
		}
		t.lastBusy, t.lastTotal = busy, total
	}
	t.last, t.lastAt = cur, now
	return u, nil
}

// processTree returns root and its descendants with their CPU ticks.
func processTree(root int) (map[int]uint64, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	type proc struct {
		ppid int
		cpu  uint64
	}
	all := map[int]proc{}
	children := map[int][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone
		}
		// The command name may hold spaces and parentheses: fields
		// start after the last ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		ut, _ := strconv.ParseUint(f[11], 10, 64)
		st, _ := strconv.ParseUint(f[12], 10, 64)
		all[pid] = proc{ppid: ppid, cpu: ut + st}
		children[ppid] = append(children[ppid], pid)
	}
	if _, ok := all[root]; !ok {
		return nil, fmt.Errorf("load: process %d is gone", root)
	}
	out := map[int]uint64{}
	queue := []int{root}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if _, done := out[pid]; done {
			continue
		}
		out[pid] = all[pid].cpu
		queue = append(queue, children[pid]...)
	}
	return out, nil
}

// pss is a process's proportional set size in bytes (0 when it is gone).
func pss(pid int) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Pss:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// machineCPU reads the machine's busy and total CPU ticks.
func machineCPU() (busy, total uint64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("load: /proc/stat: %q", line)
	}
	for i, s := range f[1:] {
		v, _ := strconv.ParseUint(s, 10, 64)
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total, nil
}

// Thresholds of a hot generator: its own processes use this share of the
// machine's cores, or the machine as a whole is this busy (other
// processes starve the generator just as well).
const (
	hotOwnShare    = 0.85
	hotMachineBusy = 95.0
)

// hot tells whether a sample shows a saturated generator.
func hot(u Usage, cores int) bool {
	return u.CPUPercent >= hotOwnShare*100*float64(cores) || u.MachineBusy >= hotMachineBusy
}

// Generator records a sample of the load generator's own usage (runner
// and browsers) into the second of at.
func (a *Aggregate) Generator(at time.Time, u Usage, isHot bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	b := a.bucketLocked(at)
	b.GenCPU += u.CPUPercent
	b.GenPSSMiB += float64(u.PSS) / (1 << 20)
	if isHot {
		b.GenHot++
	}
}

// Blocked counts requests the browser refused (browser.block).
func (a *Aggregate) Blocked(at time.Time, n int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.bucketLocked(at).Blocked += n
}

// sampleGenerator samples this process's tree every second until done.
func sampleGenerator(agg *Aggregate, done <-chan struct{}) {
	t := &TreeSampler{Root: os.Getpid()}
	_, _ = t.Sample()
	cores := runtime.NumCPU()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case now := <-tick.C:
			u, err := t.Sample()
			if err != nil {
				continue
			}
			agg.Generator(now, u, hot(u, cores))
		}
	}
}
