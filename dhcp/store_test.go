package dhcp

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
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

// TestFileStoreGroupCommit: concurrent Puts all return and all are stored.
func TestFileStoreGroupCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leases.jsonl")
	s, err := OpenFileStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
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

const storeChildEnv = "BOOTFLEET_DHCP_STORE_CHILD"

// TestFileStoreChild is the subprocess of TestFileStoreKill9: it writes
// leases from several goroutines and prints each one Put acknowledged.
func TestFileStoreChild(t *testing.T) {
	path := os.Getenv(storeChildEnv)
	if path == "" {
		t.Skip("helper process for TestFileStoreKill9")
	}
	s, err := OpenFileStore(path)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; ; i += 8 {
				if err := s.Put(storeLease(i%60000, "bound")); err != nil {
					fmt.Println("error", err)
					os.Exit(2)
				}
				mu.Lock()
				fmt.Println("acked", i%60000)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// TestFileStoreKill9: a process writing leases is killed with SIGKILL; every
// lease it was told was stored is there after reopening the file.
func TestFileStoreKill9(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leases.jsonl")
	cmd := exec.Command(os.Args[0], "-test.run=^TestFileStoreChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), storeChildEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	acked := map[int]bool{}
	sc := bufio.NewScanner(out)
	deadline := time.Now().Add(20 * time.Second)
	for len(acked) < 300 && sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "error") {
			t.Fatal(line)
		}
		if v, ok := strings.CutPrefix(line, "acked "); ok {
			i, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("bad line %q", line)
			}
			acked[i] = true
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d acks in 20s", len(acked))
		}
	}
	// Kill while it is still writing.
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if len(acked) < 300 {
		t.Fatalf("child stopped after %d acks", len(acked))
	}

	s, err := OpenFileStore(path)
	if err != nil {
		t.Fatalf("reopen after kill -9: %v", err)
	}
	defer s.Close()
	got, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	have := map[netip.Addr]bool{}
	for _, l := range got {
		have[l.IP] = true
	}
	lost := 0
	for i := range acked {
		if !have[storeLease(i, "").IP] {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged leases lost after kill -9", lost, len(acked))
	}
	t.Logf("%d acknowledged leases, %d in the file after kill -9", len(acked), len(got))
}
