package lab

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The consoles' markers: a node whose /init gave up is reported failed
// with its reason (and counts as done, so lab up --detach stops waiting);
// the first time a ready marker is seen is kept in the state file, where
// lab status in another process finds it.
func TestStatusConsoleMarkers(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "data", "admin.token"), []byte("t\n"), 0o600)
	st := &State{Dir: dir, Netns: "bf-lab-test-none", Started: time.Now().Add(-5 * time.Second)}
	for i, console := range []string{
		"[    0.000000] Linux version 6.1\nbootfleet-lab: kernel up, eth0 mac=52:54:00:bf:00:01\nBOOTFLEET-READY mac=52:54:00:bf:00:01 ip=10.77.0.100\n",
		"bootfleet-lab: kernel up, eth0 mac=52:54:00:bf:00:02\r\nBOOTFLEET-FAILED mac=52:54:00:bf:00:02 no DHCP lease\r\n",
		"[    0.000000] Linux version 6.1\n",
	} {
		n := Node{MAC: MAC(i), Firmware: FirmwareBIOS, Console: filepath.Join(dir, MAC(i)+".log")}
		if err := os.WriteFile(n.Console, []byte(console), 0o644); err != nil {
			t.Fatal(err)
		}
		st.Nodes = append(st.Nodes, n)
	}
	if err := st.save(); err != nil {
		t.Fatal(err)
	}
	ps, err := Status(context.Background(), st, true)
	if err != nil {
		t.Fatal(err)
	}
	if !ps[0].IsReady || ps[0].Ready < 5*time.Second || ps[0].Failed != "" || !ps[0].Done() {
		t.Errorf("ready node: %+v", ps[0])
	}
	if ps[1].IsReady || ps[1].Failed != "mac=52:54:00:bf:00:02 no DHCP lease" || !ps[1].Done() || !strings.Contains(ps[1].Line(), "FAILED: mac=52:54:00:bf:00:02 no DHCP lease") {
		t.Errorf("failed node: %+v\n%s", ps[1], ps[1].Line())
	}
	if ps[2].IsReady || ps[2].Failed != "" || ps[2].Done() {
		t.Errorf("booting node: %+v", ps[2])
	}
	// Another process (lab status) reads the ready time from the state.
	again, err := ReadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	ps2, err := Status(context.Background(), again, false)
	if err != nil {
		t.Fatal(err)
	}
	if ps2[0].Ready != ps[0].Ready || !strings.Contains(ps2[0].Line(), "ready 5.") {
		t.Errorf("lab status: ready at %v, lab up saw %v: %s", ps2[0].Ready, ps[0].Ready, ps2[0].Line())
	}
}
