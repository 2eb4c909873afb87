package httpboot

import (
	"sync"

	"github.com/bootfleet/bootfleet/profiles"
)

// warmer renders machines' configs ahead of their fetch, a few at a time
// in the background: a machine that got its iPXE script downloads its kernel
// and initrd next, which takes seconds, so by the time its kernel asks for
// /ignition the config is in the renderer's cache and a boot storm's
// Ignition requests cost a cache lookup instead of a Butane transpile each.
type warmer struct {
	mu      sync.Mutex
	queue   []func()
	running int // workers draining the queue
	max     int
}

// warmWorkers bounds the renders ahead running at once: a storm's
// machines ask for their Ignition seconds after their script, and one
// worker sharing the CPU with a thousand downloads fell behind.
const warmWorkers = 4

// maxWarmQueue bounds the configs waiting to be rendered ahead; beyond it
// machines are rendered when they ask, as without warming.
const maxWarmQueue = 4096

// add queues f, starting the worker when idle; it drops f when the queue is
// full.
func (w *warmer) add(f func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.queue) >= w.max {
		return
	}
	w.queue = append(w.queue, f)
	if w.running < warmWorkers && w.running < len(w.queue) {
		w.running++
		go w.run()
	}
}

func (w *warmer) run() {
	for {
		w.mu.Lock()
		if len(w.queue) == 0 {
			w.running--
			w.queue = nil
			w.mu.Unlock()
			return
		}
		f := w.queue[0]
		w.queue = w.queue[1:]
		w.mu.Unlock()
		f()
	}
}

// warmIgnition queues the rendering of n's Ignition config as the kernel's
// /ignition?mac= request will ask for it: the same snapshot, MAC, labels,
// source address and server URL, without the script's arch, firmware and
// UUID parameters (the kernel's URL carries only the MAC).
func (s *Server) warmIgnition(n *node) {
	if n.match.Profile.Ignition == "" || n.nextBoot {
		return
	}
	f := profiles.Facts{MAC: n.facts.MAC, Labels: n.facts.Labels}
	snap, ip, base := n.snap, n.data.IP, n.data.ServerURL
	s.warm.add(func() {
		if s.snap.Load() != snap {
			return // profiles reloaded meanwhile: the request renders afresh
		}
		m, err := snap.Set.Match(f)
		if err != nil {
			return
		}
		w := &node{snap: snap, facts: f, match: m}
		w.data = m.Data(f)
		w.data.IP, w.data.ServerURL = ip, base
		s.agentData(w)
		_, _, _ = snap.Renderer.Ignition(w.match, w.data)
	})
}

// idle says whether nothing is queued or rendering.
func (w *warmer) idle() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.running == 0
}
