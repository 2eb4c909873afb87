package dhcp

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func storeLease(i int, state string) Lease {
	return Lease{
		MAC:     fmt.Sprintf("52:54:00:00:%02x:%02x", i>>8&0xff, i&0xff),
		IP:      netip.AddrFrom4([4]byte{10, 77, byte(i >> 8), byte(i)}),
		State:   state,
		Expires: time.Date(2026, 11, 25, 4, 0, 0, 0, time.UTC),
		Server:  "10.77.0.1",
	}
}

// TestFileStoreReplayAndCompaction: the last record per address wins, a
// torn last line is ignored, and reopening compacts the file to one line per
// address.
func TestFileStoreReplayAndCompaction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leases.jsonl")
	s, err := OpenFileStore(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if err := s.Put(storeLease(i, "offered")); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put(storeLease(2, "bound")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// A crash in the middle of a write leaves half a line.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o600)
	f.WriteString(`{"mac":"52:54:00:00:00:09","ip":"10.7`)
	f.Close()

	s, err = OpenFileStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("got %d leases, want 3: %+v", len(got), got)
	}
	for _, l := range got {
		want := "offered"
		if l.IP == storeLease(2, "").IP {
			want = "bound"
		}
		if l.State != want {
			t.Errorf("%s: state %q, want %q", l.IP, l.State, want)
		}
	}
	b, _ := os.ReadFile(path)
	if n := strings.Count(string(b), "\n"); n != 3 {
		t.Errorf("compacted file has %d lines, want 3:\n%s", n, b)
	}
	if !strings.Contains(string(b), `"expires":"2026-11-25T04:00:00Z"`) {
		t.Errorf("expires not RFC 3339 in %s", b)
	}
}

// TestFileStoreGroupCommit: with SyncEveryPut, concurrent Puts share fsyncs,
// all return and all are stored.
func TestFileStoreGroupCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leases.jsonl")
	s, err := OpenFileStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SyncEveryPut = true
	var wg sync.WaitGroup
	const n = 200
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.Put(storeLease(i, "bound"))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, _ := s.Load()
	if len(got) != n {
		t.Fatalf("stored %d, want %d", len(got), n)
	}
}
