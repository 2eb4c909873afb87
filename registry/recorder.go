package registry

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Recorder takes observations from the hot paths (DHCP, TFTP, HTTP boot)
// without making them wait for etcd: Record only queues, and a background
// loop writes batches, one write per node per batch. When etcd is away the
// loop retries with backoff and the queue absorbs the gap; when the queue is
// full, new observations are dropped and counted, never blocking a boot.
type Recorder struct {
	reg   *Registry
	queue chan Observation

	dropped atomic.Uint64
	written atomic.Uint64
	failed  atomic.Uint64

	mu      sync.Mutex
	pending int // queued or being written
	idle    *sync.Cond
	// recent holds each node's last step (event and detail) and when it
	// was queued; the same step again, with no other step in between and
	// within dedupWindow, is coalesced, not written (DHCP retransmits, iPXE
	// retries, a client fetching one config in a loop). Different details
	// (the kernel, then the initrd) are different steps, and a reboot's
	// steps come after others, so they are recorded.
	recent    map[string]lastStep
	swept     time.Time
	coalesced atomic.Uint64
}

type lastStep struct {
	event, detail string
	at            time.Time
}

// dedupWindow is how close the same step of the same node (same event,
// same detail) may repeat before it is recorded again: a node that fetches
// its config in a loop, or a client hammering one MAC, costs one write of
// the node per ten seconds, not one per request.
const dedupWindow = 10 * time.Second

// NewRecorder returns a Recorder with room for size queued observations
// (default 65536 when size <= 0). Call Run to start writing.
func NewRecorder(reg *Registry, size int) *Recorder {
	if size <= 0 {
		size = 1 << 16
	}
	r := &Recorder{reg: reg, queue: make(chan Observation, size), recent: map[string]lastStep{}}
	r.idle = sync.NewCond(&r.mu)
	return r
}

// Record queues an observation and reports whether it was accepted; a
// repeat of a node's last step within dedupWindow is coalesced (accepted,
// not written again).
func (r *Recorder) Record(o Observation) bool {
	if o.Event.Time.IsZero() {
		o.Event.Time = time.Now().UTC()
	}
	r.mu.Lock()
	if o.Event.Event != "" {
		last, ok := r.recent[o.MAC]
		if ok && last.event == o.Event.Event && last.detail == o.Event.Detail && o.Event.Time.Sub(last.at) < dedupWindow {
			r.mu.Unlock()
			r.coalesced.Add(1)
			return true
		}
		r.recent[o.MAC] = lastStep{o.Event.Event, o.Event.Detail, o.Event.Time}
		if o.Event.Time.Sub(r.swept) > 10*dedupWindow {
			for k, l := range r.recent {
				if o.Event.Time.Sub(l.at) > dedupWindow {
					delete(r.recent, k)
				}
			}
			r.swept = o.Event.Time
		}
	}
	r.pending++
	r.mu.Unlock()
	select {
	case r.queue <- o:
		return true
	default:
		r.dropped.Add(1)
		r.done(1)
		return false
	}
}

func (r *Recorder) done(n int) {
	r.mu.Lock()
	r.pending -= n
	if r.pending == 0 {
		r.idle.Broadcast()
	}
	r.mu.Unlock()
}

// Stats reports observations written, dropped because the queue was full,
// and write attempts that failed (and were retried).
func (r *Recorder) Stats() (written, dropped, failed uint64) {
	return r.written.Load(), r.dropped.Load(), r.failed.Load()
}

// Coalesced reports observations not written because the same step of the
// same node was recorded less than a second before.
func (r *Recorder) Coalesced() uint64 { return r.coalesced.Load() }

// Flush waits until everything queued so far is written or ctx ends.
func (r *Recorder) Flush(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		r.mu.Lock()
		r.idle.Broadcast()
		r.mu.Unlock()
	})
	defer stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.pending > 0 && ctx.Err() == nil {
		r.idle.Wait()
	}
	return ctx.Err()
}

// lingerTime is how long Run waits for more observations before writing.
const lingerTime = 50 * time.Millisecond

// Run writes queued observations until ctx ends.
func (r *Recorder) Run(ctx context.Context) error {
	const maxBatch = 2048
	for {
		var first Observation
		select {
		case <-ctx.Done():
			return nil
		case first = <-r.queue:
		}
		// Linger briefly so that the steps of one boot (DISCOVER, OFFER,
		// REQUEST, ACK within milliseconds) become one write of the node.
		batch := []Observation{first}
		linger := time.NewTimer(lingerTime)
	collect:
		for len(batch) < maxBatch {
			select {
			case o := <-r.queue:
				batch = append(batch, o)
			case <-linger.C:
				break collect
			case <-ctx.Done():
				break collect
			}
		}
		linger.Stop()
		byMAC := map[string][]Observation{}
		for _, o := range batch {
			byMAC[o.MAC] = append(byMAC[o.MAC], o)
		}
		backoff := 100 * time.Millisecond
		for {
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := r.reg.ObserveBatch(wctx, byMAC)
			cancel()
			if err == nil {
				r.written.Add(uint64(len(batch)))
				break
			}
			r.failed.Add(1)
			r.reg.log.Warn("registry: recording failed; retrying", "observations", len(batch), "error", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				r.done(len(batch))
				return nil
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
		}
		r.done(len(batch))
	}
}
