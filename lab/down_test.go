package lab

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Down after a crash long ago: the PIDs in the state file now belong to
// other programs, which it must leave alone; it still removes the state.
func TestDownLeavesReusedPIDsAlone(t *testing.T) {
	dir := t.TempDir()
	other := exec.Command("sleep", "60")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { other.Process.Kill(); other.Wait() }()
	st := State{Dir: dir, Netns: Netns(dir) + "x", ServerPID: other.Process.Pid, Nodes: []Node{{MAC: MAC(0), PID: other.Process.Pid}}}
	b, _ := json.Marshal(st)
	if err := os.WriteFile(filepath.Join(dir, stateFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Down(dir, nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if err := other.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("Down killed a process that is not the lab's: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, stateFile)); !os.IsNotExist(err) {
		t.Errorf("state file still there: %v", err)
	}
}
