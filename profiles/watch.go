package profiles

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"time"
)

// Watcher keeps a directory loaded: it polls the tree for changes and
// reloads it, keeping the last good Set when a new one fails to load or is
// refused by the OnLoad hook.
type Watcher struct {
	fsys     fs.FS
	root     string
	interval time.Duration
	onLoad   func(*Set) error
	onResult func(error)
	log      *slog.Logger

	mu      sync.Mutex
	current *Set
	lastErr error
	stamp   [32]byte
	loaded  time.Time
}

// WatcherConfig configures a Watcher.
type WatcherConfig struct {
	FS   fs.FS
	Root string // the directory's name in messages
	// Interval between checks for changes; default 1s.
	Interval time.Duration
	// OnLoad is called with every Set that loaded; an error refuses the Set
	// (for example when its Butane does not transpile) and the previous one
	// stays. It is called before Current returns the new Set.
	OnLoad func(*Set) error
	// OnResult, if set, is told the outcome of every reload attempt after
	// the first load: nil when the new Set is served, else why not.
	OnResult func(error)
	Log      *slog.Logger
}

// NewWatcher loads the directory once; it fails when that first load fails.
func NewWatcher(cfg WatcherConfig) (*Watcher, error) {
	w := &Watcher{fsys: cfg.FS, root: cfg.Root, interval: cfg.Interval, onLoad: cfg.OnLoad, onResult: cfg.OnResult, log: cfg.Log}
	if w.interval <= 0 {
		w.interval = time.Second
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if w.onLoad == nil {
		w.onLoad = func(*Set) error { return nil }
	}
	if w.onResult == nil {
		w.onResult = func(error) {}
	}
	stamp, err := fingerprint(w.fsys)
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", w.root, err)
	}
	s, err := w.load()
	if err != nil {
		return nil, err
	}
	w.current, w.stamp, w.loaded = s, stamp, time.Now()
	return w, nil
}

func (w *Watcher) load() (*Set, error) {
	s, err := Load(w.fsys, w.root)
	if err != nil {
		return nil, err
	}
	if err := w.onLoad(s); err != nil {
		return nil, err
	}
	return s, nil
}

// Current returns the Set being served.
func (w *Watcher) Current() *Set {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.current
}

// Status returns when the serving Set was loaded and the error of the last
// reload attempt, nil when it succeeded.
func (w *Watcher) Status() (loaded time.Time, lastErr error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.loaded, w.lastErr
}

// Run polls for changes until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			w.Check()
		}
	}
}

// Check reloads the directory if it changed since the last look, and
// reports whether it did reload successfully.
func (w *Watcher) Check() bool {
	stamp, err := fingerprint(w.fsys)
	if err != nil {
		w.fail(fmt.Errorf("scan %s: %w", w.root, err), stamp)
		return false
	}
	w.mu.Lock()
	same := stamp == w.stamp
	w.mu.Unlock()
	if same {
		return false
	}
	s, err := w.load()
	if err != nil {
		w.fail(err, stamp)
		return false
	}
	w.mu.Lock()
	w.current, w.lastErr, w.stamp, w.loaded = s, nil, stamp, time.Now()
	w.mu.Unlock()
	w.log.Info("profiles reloaded", "dir", w.root, "groups", len(s.Groups), "profiles", len(s.Profiles), "warnings", len(s.Warnings))
	w.onResult(nil)
	return true
}

func (w *Watcher) fail(err error, stamp [32]byte) {
	w.mu.Lock()
	w.lastErr, w.stamp = err, stamp
	w.mu.Unlock()
	w.onResult(err)
	var list ErrorList
	if errors.As(err, &list) {
		for _, e := range list {
			w.log.Error("profiles reload failed; still serving the last good set", "dir", w.root, "error", e.Error())
		}
		return
	}
	w.log.Error("profiles reload failed; still serving the last good set", "dir", w.root, "error", err)
}

// fingerprint hashes every file's path, size and modification time (and
// the content of small files, whose edits can keep size and mtime within
// the filesystem's timestamp granularity).
func fingerprint(fsys fs.FS) ([32]byte, error) {
	h := sha256.New()
	var buf [8]byte
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		h.Write([]byte(p))
		h.Write([]byte{0})
		binary.LittleEndian.PutUint64(buf[:], uint64(info.Size()))
		h.Write(buf[:])
		binary.LittleEndian.PutUint64(buf[:], uint64(info.ModTime().UnixNano()))
		h.Write(buf[:])
		if info.Mode().IsRegular() && info.Size() <= 64<<10 && p != "assets" && !isUnder(p, "assets") {
			data, err := fs.ReadFile(fsys, p)
			if err != nil {
				return err
			}
			h.Write(data)
		}
		return nil
	})
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out, err
}

func isUnder(p, dir string) bool {
	return len(p) > len(dir) && p[:len(dir)] == dir && p[len(dir)] == '/'
}
