// Package podmantest starts a real podman Docker-compatible API service for
// tests, with its own storage and its own network namespace, removed when
// the test ends; and builds a small busybox image archive to load into it.
package podmantest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"debug/elf"
	"encoding/hex"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bootfleet/bootfleet/images"
)

// Service is a running podman API service.
type Service struct {
	// Host is the DOCKER_HOST of the service: unix:///…/podman.sock.
	Host string
	// Podman runs the podman CLI on the same storage (for checks).
	Podman func(args ...string) (string, error)
	// Netns is the network namespace (under /run/netns) the service and
	// its containers' networks live in.
	Netns string
}

// conf is LAB.md's containers.conf for these machines: cgroupfs, runc,
// file events, no default ulimits.
const conf = `[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"
`

// Start starts the service. It skips the test when not root and fails when
// podman is missing (`make test` installs it).
func Start(t testing.TB) *Service {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run podman's service and its network namespace (CI runs as root)")
	}
	if _, err := exec.LookPath("podman"); err != nil {
		t.Fatal("podman is not installed: `make test` installs podman and runc")
	}
	dir, err := os.MkdirTemp("", "bf-podman-")
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 3)
	rand.Read(b)
	ns := "bf-p-" + hex.EncodeToString(b)
	confPath := filepath.Join(dir, "containers.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	global := []string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"), "--storage-driver", "vfs",
		"--tmpdir", filepath.Join(dir, "tmp")}
	env := append(os.Environ(), "CONTAINERS_CONF="+confPath)
	podman := func(args ...string) (string, error) {
		cmd := exec.Command("nsenter", append([]string{"--net=/run/netns/" + ns, "podman"}, append(global, args...)...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	sock := filepath.Join(dir, "podman.sock")
	logf, err := os.Create(filepath.Join(dir, "service.log"))
	if err != nil {
		t.Fatal(err)
	}
	// nsenter, not ip netns exec: that remounts /sys and hides the cgroup
	// hierarchy runc needs (LAB.md).
	cmd := exec.Command("nsenter", append([]string{"--net=/run/netns/" + ns, "podman"}, append(global, "system", "service", "--time=0", "unix://"+sock)...)...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("podman system service: %v", err)
	}
	t.Cleanup(func() {
		_, _ = podman("rm", "--all", "--force", "--time", "0")
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		logf.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logf.Name()); err == nil {
				t.Logf("podman service log:\n%s", lastLines(string(b), 40))
			}
		}
		killLeftovers(t, dir)
		exec.Command("ip", "netns", "del", ns).Run()
		os.RemoveAll(dir)
	})
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}, Timeout: 10 * time.Second}
	// Generous: on a loaded machine (CI runs packages in parallel) the
	// service's first start, with its storage set-up, took over 30 s.
	const startWait = 2 * time.Minute
	deadline := time.Now().Add(startWait)
	for {
		resp, err := hc.Get("http://d/v1.41/version")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("podman service did not answer within %v: %v\n%s", startWait, err, lastLines(string(b), 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return &Service{Host: "unix://" + sock, Podman: podman, Netns: ns}
}

// killLeftovers kills every process still running from the service's
// directory (conmon and containers that podman rm did not take), so a test
// leaves nothing behind.
func killLeftovers(t testing.TB, dir string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte(dir)) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil || pid == os.Getpid() {
			continue
		}
		t.Logf("podmantest: killing leftover process %d: %s", pid, strings.ReplaceAll(string(b[:min(len(b), 120)]), "\x00", " "))
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// BusyboxArchive returns a docker save archive of a one-layer image tagged
// tag holding Debian's static busybox as /bin/busybox with the usual
// applets linked, made here without any registry.
func BusyboxArchive(t testing.TB, tag string) []byte {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal("busybox is not installed: `make test` installs busybox-static")
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if f, err := elf.NewFile(bytes.NewReader(data)); err == nil {
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Fatalf("%s is dynamically linked; the image needs a static busybox (`make test` installs busybox-static)", bb)
			}
		}
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	epoch := time.Unix(0, 0)
	for _, d := range []string{"bin/", "tmp/", "etc/", "proc/", "sys/", "dev/"} {
		tw.WriteHeader(&tar.Header{Name: d, Mode: 0o755, Typeflag: tar.TypeDir, ModTime: epoch})
	}
	tw.WriteHeader(&tar.Header{Name: "bin/busybox", Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg, ModTime: epoch})
	tw.Write(data)
	for _, applet := range []string{"sh", "sleep", "echo", "cat", "ls", "yes", "wget", "true", "false"} {
		tw.WriteHeader(&tar.Header{Name: "bin/" + applet, Linkname: "busybox", Typeflag: tar.TypeSymlink, Mode: 0o777, ModTime: epoch})
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := images.WriteDockerArchive(&out, tag, layer.Bytes(), images.ImageConfig{Cmd: []string{"/bin/sh"}, Env: []string{"PATH=/bin"}}); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}
