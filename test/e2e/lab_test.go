package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bootfleet/bootfleet/lab"
)

// labTools builds the bootfleet binary with the agent next to it (where
// the lab's server serves it from) and the lab image with the agent in it
// (cached between runs on this machine, built from Debian packages).
func labTools(t *testing.T) (bin, image string) {
	t.Helper()
	// A directory of its own: other tests' servers must not find an agent
	// next to their binary.
	dir := t.TempDir()
	agent := filepath.Join(agentBinaries(t), "bootfleet-agent-amd64")
	bin = filepath.Join(dir, "bootfleet")
	for src, dst := range map[string]string{bootfleet(t): bin, agent: filepath.Join(dir, "bootfleet-agent-amd64")} {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cache := filepath.Join(os.TempDir(), "bootfleet-test-cache")
	image = filepath.Join(t.TempDir(), "image")
	out, errOut, code := runBin(t, bin, "images", "build-lab", "--out", image, "--cache", cache, "--agent", agent)
	if code != 0 {
		t.Fatalf("images build-lab: exit %d\n%s%s", code, out, errOut)
	}
	return bin, image
}

// TestLabBootsRealFirmware: the lab boots three QEMU VMs from bootfleet —
// BIOS through the NIC's iPXE ROM, UEFI through it, and UEFI through the
// firmware's own PXE (DHCP, TFTP ipxe.efi, then iPXE), as a real server —
// each to its image's ready marker, with its agent joined, every step in
// the node's timeline; lab down leaves nothing behind.
func TestLabBootsRealFirmware(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs")
	}
	if os.Geteuid() != 0 {
		t.Skip("the lab needs root (namespaces, taps); CI runs as root")
	}
	for _, tool := range []string{"qemu-system-x86_64", "apt-get", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: `make test` installs qemu-system-x86, ipxe-qemu and ovmf", tool)
		}
	}
	bin, image := labTools(t)
	dir := filepath.Join(t.TempDir(), "lab")
	t.Cleanup(func() {
		if t.Failed() {
			for i := range 4 {
				if b, err := os.ReadFile(filepath.Join(dir, "vm-"+string(rune('0'+i))+".log")); err == nil {
					t.Logf("vm-%d console (last lines):\n%s", i, lastN(string(b), 15))
				}
			}
			if b, err := os.ReadFile(filepath.Join(dir, "server.log")); err == nil {
				t.Logf("server log (last lines):\n%s", lastN(string(b), 30))
			}
		}
		exec.Command(bin, "lab", "down", "--dir", dir).Run()
	})
	out, errOut, code := runBin(t, bin, "lab", "up", "--dir", dir, "--image", image, "--nodes", "3", "--firmware", "mixed", "--strangers", "1", "--detach", "--timeout", "4m")
	t.Logf("lab up:\n%s", out)
	if code != 0 || !strings.Contains(out, "all nodes ready") {
		t.Fatalf("lab up: exit %d\n%s", code, errOut)
	}
	st, err := lab.ReadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range st.Nodes {
		cmd := exec.Command("ip", "netns", "exec", st.Netns, bin, "nodes", "show", n.MAC, "--server", lab.ServerURL, "--data-dir", filepath.Join(dir, "data"))
		show, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("nodes show %s: %v\n%s", n.MAC, err, show)
		}
		if n.Stranger {
			// No group selects it: refused with the reason, and it boots
			// no further.
			console, _ := os.ReadFile(n.Console)
			if !strings.Contains(string(show), "unmatched") || strings.Contains(string(show), "ignition") || strings.Contains(string(console), "BOOTFLEET-READY") {
				t.Errorf("stranger %s was not refused:\n%s\nconsole:\n%s", n.MAC, show, lastN(string(console), 10))
			}
			continue
		}
		for _, want := range []string{"dhcp.ack", "ipxe", "/assets/lab/vmlinuz", "ignition", "agent.join"} {
			if !strings.Contains(string(show), want) {
				t.Errorf("%s (%s): timeline has no %s:\n%s", n.MAC, n.Firmware, want, show)
			}
		}
		firmware := map[string]string{lab.FirmwareBIOS: "bios", lab.FirmwareUEFI: "uefi", lab.FirmwareUEFIPXE: "uefi"}[n.Firmware]
		if !strings.Contains(string(show), "Firmware:      "+firmware) {
			t.Errorf("%s booted %s but the inventory says:\n%s", n.MAC, n.Firmware, show)
		}
		if n.Firmware == lab.FirmwareUEFIPXE && !strings.Contains(string(show), "boot ipxe.efi") {
			t.Errorf("%s: the native PXE path (TFTP ipxe.efi) is not in its timeline:\n%s", n.MAC, show)
		}
		// The Ignition the VM fetched (its console prints the sha256) is
		// the one render prints for its MAC, agent and token included.
		inNS := func(args ...string) string {
			out, err := exec.Command("ip", append([]string{"netns", "exec", st.Netns, bin}, args...)...).Output()
			if err != nil {
				t.Fatalf("bootfleet %s: %v", strings.Join(args, " "), err)
			}
			return string(out)
		}
		token := strings.TrimSpace(inNS("nodes", "agent-token", n.MAC, "--server", lab.ServerURL, "--data-dir", filepath.Join(dir, "data")))
		rendered := inNS("render", "--profiles", filepath.Join(dir, "profiles"), "--mac", n.MAC, "--kind", "ignition",
			"--public-url", lab.ServerURL, "--agent-token", token)
		sum := sha256.Sum256([]byte(rendered))
		console, _ := os.ReadFile(n.Console)
		if !strings.Contains(string(console), "sha256 "+hex.EncodeToString(sum[:])) {
			t.Errorf("%s: the Ignition on its console is not what render prints (sha256 %x):\n%s", n.MAC, sum, lastN(string(console), 20))
		}
	}

	if out, errOut, code := runBin(t, bin, "lab", "down", "--dir", dir); code != 0 {
		t.Fatalf("lab down: %s%s", out, errOut)
	}
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), st.Netns) {
		t.Errorf("namespace %s still there after lab down", st.Netns)
	}
	if out, _ := exec.Command("pgrep", "-f", dir+"/").Output(); len(out) > 0 {
		t.Errorf("processes of the lab still running after lab down: %s", out)
	}
}

func lastN(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// TestLabDownAfterCrash: lab up dies by SIGKILL while its VM boots (no
// chance to clean up); its server and VM live on, orphaned, and lab down
// removes them, the namespace with its bridge and tap, and the state file.
func TestLabDownAfterCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	if os.Geteuid() != 0 {
		t.Skip("the lab needs root (namespaces, taps); CI runs as root")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Fatal("qemu-system-x86_64 is missing: `make test` installs qemu-system-x86, ipxe-qemu and ovmf")
	}
	bin, image := labTools(t)
	dir := filepath.Join(t.TempDir(), "lab")
	t.Cleanup(func() { exec.Command(bin, "lab", "down", "--dir", dir).Run() })
	var stdout, stderr syncBuffer
	cmd := exec.Command(bin, "lab", "up", "--dir", dir, "--image", image, "--nodes", "1", "--firmware", "bios")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// Kill it once the server has seen the VM (DHCP has a time).
	dhcp := regexp.MustCompile(`DHCP [0-9.]+s`)
	deadline := time.Now().Add(3 * time.Minute)
	for !dhcp.MatchString(stdout.String()) {
		select {
		case err := <-done:
			t.Fatalf("lab up exited early: %v\n%s%s", err, stdout.String(), stderr.String())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the VM did not reach DHCP in 3 minutes:\n%s%s", stdout.String(), stderr.String())
		}
	}
	st, err := lab.ReadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-done
	alive := func(pid int) bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		return err == nil && strings.Contains(string(b), dir+"/")
	}
	pids := []int{st.ServerPID, st.Nodes[0].PID}
	for _, pid := range pids {
		if !alive(pid) {
			t.Fatalf("pid %d died with lab up; the test wants it orphaned (state %+v)", pid, st)
		}
	}
	if out, errOut, code := runBin(t, bin, "lab", "down", "--dir", dir); code != 0 {
		t.Fatalf("lab down: exit %d\n%s%s", code, out, errOut)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("pid %d still runs after lab down", pid)
		}
	}
	if out, _ := exec.Command("pgrep", "-f", dir+"/").Output(); len(out) > 0 {
		t.Errorf("processes of the lab still running after lab down: %s", out)
	}
	if _, err := os.Stat("/run/netns/" + st.Netns); err == nil {
		t.Errorf("namespace %s (bridge, tap) still there after lab down", st.Netns)
	}
	if _, err := os.Stat(filepath.Join(dir, "lab.json")); !os.IsNotExist(err) {
		t.Errorf("state file still there after lab down: %v", err)
	}
}
