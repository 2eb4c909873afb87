package dhcp

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// A child process acknowledges leases as fast as it can and is killed with
// SIGKILL; every lease it acknowledged is in the file afterwards.
func TestStoreSurvivesKill9(t *testing.T) {
	if path := os.Getenv("BF_STORE_CHILD"); path != "" {
		st, err := OpenFileStore(path)
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		w := bufio.NewWriter(os.Stdout)
		for i := 0; ; i++ {
			ip := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
			if err := st.Put(Lease{MAC: fmt.Sprintf("02:00:00:00:%02x:%02x", byte(i>>8), byte(i)), IP: ip, State: StateBound, Expires: time.Now().Add(time.Hour)}); err != nil {
				fmt.Println("error", err)
				os.Exit(1)
			}
			fmt.Fprintln(w, i) // acknowledged
			w.Flush()
		}
	}
	path := filepath.Join(t.TempDir(), "leases.jsonl")
	cmd := exec.Command(os.Args[0], "-test.run", "^TestStoreSurvivesKill9$")
	cmd.Env = append(os.Environ(), "BF_STORE_CHILD="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	acked := -1
	for sc.Scan() && acked < 3000 {
		n, err := strconv.Atoi(sc.Text())
		if err != nil {
			t.Fatalf("child: %s", sc.Text())
		}
		acked = n
	}
	cmd.Process.Kill()
	cmd.Wait()
	leases, err := readLeaseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(leases) < acked+1 {
		t.Fatalf("%d leases in the file after kill -9, but %d were acknowledged", len(leases), acked+1)
	}
}
