package dhcp

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// LeaseStore keeps leases durably. Put returns once the lease survives a
// crash: the server sends an ACK only after that. The registry backs it
// with etcd; FileStore is the local implementation.
type LeaseStore interface {
	Load() ([]Lease, error)
	Put(Lease) error
}

// FileStore is an append-only file of JSON lines.
//
// By default Put returns once its line is written to the file (write(2)):
// the lease then survives a kill -9 of bootfleet, and a background fsync
// every SyncInterval bounds what a power failure can take. With
// SyncEveryPut, Put also waits for an fsync; Puts that arrive together
// share one write and one fsync (group commit), so a storm of ACKs costs
// few syncs.
type FileStore struct {
	path string
	// SyncEveryPut makes Put wait for fsync (survives power loss).
	SyncEveryPut bool

	mu      sync.Mutex
	f       *os.File
	pending []putReq
	syncing bool
	dirty   bool
	closed  bool
	stop    chan struct{}
}

// SyncInterval is how often a FileStore without SyncEveryPut fsyncs.
const SyncInterval = 200 * time.Millisecond

type putReq struct {
	line []byte
	done chan error
}

// OpenFileStore opens (creating) the lease file at path, compacting it to
// the latest record of each address.
func OpenFileStore(path string) (*FileStore, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("lease store: %w", err)
	}
	leases, err := readLeaseFile(path)
	if err != nil {
		return nil, err
	}
	// Compact: write the current state to a new file and rename it over.
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lease store: %w", err)
	}
	w := bufio.NewWriter(f)
	for _, l := range leases {
		b, _ := json.Marshal(l)
		w.Write(append(b, '\n'))
	}
	if err := errors.Join(w.Flush(), f.Sync(), f.Close()); err != nil {
		return nil, fmt.Errorf("lease store: compact: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("lease store: %w", err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	f, err = os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lease store: %w", err)
	}
	s := &FileStore{path: path, f: f, stop: make(chan struct{})}
	go s.syncLoop()
	return s, nil
}

// syncLoop fsyncs written lines every SyncInterval.
func (s *FileStore) syncLoop() {
	t := time.NewTicker(SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		if s.dirty && !s.closed {
			s.dirty = false
			s.f.Sync()
		}
		s.mu.Unlock()
	}
}

// readLeaseFile replays the file: the last record per address wins. A torn
// last line (a crash mid-write, never acknowledged) is ignored.
func readLeaseFile(path string) ([]Lease, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lease store: %w", err)
	}
	defer f.Close()
	latest := map[string]Lease{}
	var order []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l Lease
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil || !l.IP.Is4() {
			continue
		}
		key := l.IP.String()
		if _, ok := latest[key]; !ok {
			order = append(order, key)
		}
		latest[key] = l
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("lease store: read %s: %w", path, err)
	}
	out := make([]Lease, 0, len(order))
	for _, k := range order {
		out = append(out, latest[k])
	}
	return out, nil
}

// Load returns the stored leases.
func (s *FileStore) Load() ([]Lease, error) { return readLeaseFile(s.path) }

// Put appends a lease and returns once it is written (and, with
// SyncEveryPut, synced).
func (s *FileStore) Put(l Lease) error {
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	line := append(b, '\n')
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("lease store closed")
	}
	if !s.SyncEveryPut {
		_, err := s.f.Write(line) // one write(2): whole line or error
		s.dirty = true
		s.mu.Unlock()
		if err != nil {
			return fmt.Errorf("lease store: %w", err)
		}
		return nil
	}
	req := putReq{line: line, done: make(chan error, 1)}
	s.pending = append(s.pending, req)
	lead := !s.syncing
	if lead {
		s.syncing = true
	}
	s.mu.Unlock()
	if lead {
		s.flushLoop()
	}
	return <-req.done
}

// flushLoop writes and syncs batches until nothing is pending. Whoever
// finds no sync running becomes the writer; others wait for their batch.
func (s *FileStore) flushLoop() {
	for {
		s.mu.Lock()
		batch := s.pending
		s.pending = nil
		if len(batch) == 0 {
			s.syncing = false
			s.mu.Unlock()
			return
		}
		f := s.f
		s.mu.Unlock()
		var buf []byte
		for _, r := range batch {
			buf = append(buf, r.line...)
		}
		_, err := f.Write(buf)
		if err == nil {
			err = f.Sync()
		}
		if err != nil {
			err = fmt.Errorf("lease store: %w", err)
		}
		for _, r := range batch {
			r.done <- err
		}
	}
}

// Close syncs and closes the file.
func (s *FileStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	close(s.stop)
	return errors.Join(s.f.Sync(), s.f.Close())
}
