// Package e2e drives the built bootfleet binary from outside, as users do:
// real processes, real sockets, real clients such as curl.
package e2e

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bootfleet/bootfleet/internal/netnstest"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// bootfleet returns the path of a bootfleet binary built from this tree.
func bootfleet(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "bootfleet-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "bootfleet")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/bootfleet")
		cmd.Dir = repoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// server is a running `bootfleet serve` process.
type server struct {
	URL     string
	DataDir string
	cmd     *exec.Cmd
	stderr  *syncBuffer
	done    chan error
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startServer runs `bootfleet serve` with args on a free loopback port and
// waits until /healthz answers. The process is killed at cleanup.
func startServer(t *testing.T, args ...string) *server {
	t.Helper()
	return startServerIn(t, t.TempDir(), freePort(t), "http://"+freePort(t), "http://"+freePort(t), args...)
}

// startServerIn is startServer with a given data dir, HTTP address and
// embedded etcd URLs, so that a test can restart a server where it was.
func startServerIn(t *testing.T, dataDir, addr, etcdClient, etcdPeer string, args ...string) *server {
	t.Helper()
	full := append([]string{"serve", "--http", addr, "--data-dir", dataDir, "--tftp=false",
		"--etcd-listen-client", etcdClient, "--etcd-listen-peer", etcdPeer}, args...)
	cmd := exec.Command(bootfleet(t), full...)
	s := &server{URL: "http://" + addr, DataDir: dataDir, cmd: cmd, stderr: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-s.done
		if t.Failed() {
			t.Logf("server log:\n%s", s.stderr.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-s.done:
			t.Fatalf("server exited early: %v\n%s", err, s.stderr.String())
		default:
		}
		resp, err := http.Get(s.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			return s
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("server did not answer /healthz within 20s\n%s", s.stderr.String())
	return nil
}

// stop sends SIGTERM and returns the exit error (nil for a clean exit).
func (s *server) stop(t *testing.T) error {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.done:
		s.done <- err // for cleanup
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("server did not exit within 10s of SIGTERM")
		return nil
	}
}

// run runs the bootfleet CLI and returns stdout, stderr and the exit code.
func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	return runEnv(t, nil, args...)
}

// runEnv is run with extra environment variables.
func runEnv(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	return runBinEnv(t, bootfleet(t), env, args...)
}

// runBin runs another bootfleet binary (one with an agent beside it).
func runBin(t *testing.T, bin string, args ...string) (string, string, int) {
	t.Helper()
	return runBinEnv(t, bin, nil, args...)
}

func runBinEnv(t *testing.T, bin string, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

// curl runs the real curl client and returns its stdout.
func curl(t *testing.T, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("curl")
	if err != nil {
		t.Fatal("curl is not installed: `make test` installs it (Debian package curl)")
	}
	cmd := exec.Command(path, append([]string{"-sS", "--max-time", "10"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("curl %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// copyDir copies a directory tree (for editing a profiles dir in a test).
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// execIn starts bootfleet in dir with extra environment; it is killed at
// cleanup.
func execIn(t *testing.T, dir string, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bootfleet(t), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("bootfleet log:\n%s", stderr.String())
		}
	})
	return cmd
}

// nsServer is `bootfleet serve` running in a test's network namespace.
type nsServer struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	log  *syncBuffer
}

// startServeIn starts `bootfleet serve args...` in namespace ns and waits
// until healthURL answers from inside it. The process is killed at the end
// of the test, and its log (the last 4,000 bytes) shown if the test failed.
func startServeIn(t *testing.T, ns, healthURL string, args ...string) *nsServer {
	t.Helper()
	s := &nsServer{cmd: netnstest.Command(ns, bootfleet(t), append([]string{"serve"}, args...)...), done: make(chan struct{}), log: &syncBuffer{}}
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		<-s.done
		if t.Failed() {
			t.Logf("server log:\n%s", lastN(s.log.String(), 4000))
		}
	})
	waitFor(t, "serve in the namespace", func() bool {
		return netnstest.Command(ns, "curl", "-sf", "--max-time", "2", healthURL).Run() == nil
	})
	return s
}
