package profiles

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWatcherKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"profiles/p.yaml": "name: p\n",
		"groups/a.yaml":   "name: a\nprofile: p\n",
	})
	refuse := false
	w, err := NewWatcher(WatcherConfig{FS: os.DirFS(dir), Root: dir, OnLoad: func(*Set) error {
		if refuse {
			return os.ErrInvalid
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	first := w.Current()
	if w.Check() {
		t.Fatal("Check reloaded an unchanged directory")
	}

	// A broken edit: the last good set keeps serving, the error is reported.
	writeFiles(t, dir, map[string]string{"groups/a.yaml": "name: a\nprofile: missing\n"})
	if w.Check() {
		t.Fatal("broken edit was loaded")
	}
	if w.Current() != first {
		t.Fatal("broken edit replaced the serving set")
	}
	if _, lastErr := w.Status(); lastErr == nil {
		t.Fatal("Status reports no error after a broken edit")
	}

	// A good edit is picked up and clears the error.
	writeFiles(t, dir, map[string]string{"groups/b.yaml": "name: b\nprofile: p\nselector: {arch: arm64}\n", "groups/a.yaml": "name: a\nprofile: p\n"})
	if !w.Check() {
		t.Fatal("good edit not loaded")
	}
	if got := len(w.Current().Groups); got != 2 {
		t.Fatalf("%d groups after the edit, want 2", got)
	}
	if _, lastErr := w.Status(); lastErr != nil {
		t.Fatalf("error still reported after a good edit: %v", lastErr)
	}

	// The hook can refuse a set that loads.
	refuse = true
	writeFiles(t, dir, map[string]string{"groups/c.yaml": "name: c\nprofile: p\nselector: {firmware: uefi}\n"})
	if w.Check() || len(w.Current().Groups) != 2 {
		t.Fatal("set refused by OnLoad was served")
	}
}

func TestWatcherRun(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"profiles/p.yaml": "name: p\n", "groups/a.yaml": "name: a\nprofile: p\n"})
	w, err := NewWatcher(WatcherConfig{FS: os.DirFS(dir), Root: dir, Interval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	writeFiles(t, dir, map[string]string{"groups/b.yaml": "name: b\nprofile: p\nselector: {arch: arm64}\n"})
	deadline := time.After(10 * time.Second)
	for len(w.Current().Groups) != 2 {
		select {
		case <-deadline:
			t.Fatal("edit not picked up within 10s")
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestNewWatcherRefusesBrokenDir(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"groups/a.yaml": "name: a\nprofile: p\n"})
	if _, err := NewWatcher(WatcherConfig{FS: os.DirFS(dir), Root: dir}); err == nil {
		t.Fatal("NewWatcher accepted a broken directory")
	}
}
