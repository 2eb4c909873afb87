package agent

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/bootfleet/bootfleet/internal/podmantest"
)

const testImage = "localhost/bootfleet-test/busybox:1"

// startDocker starts a real podman service with the test image loaded
// through the Engine API, as an air-gapped node gets it.
func startDocker(t *testing.T) (*Docker, *podmantest.Service) {
	t.Helper()
	svc := podmantest.Start(t)
	d, err := NewDocker(svc.Host)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := d.LoadImage(ctx, bytes.NewReader(podmantest.BusyboxArchive(t, testImage))); err != nil {
		t.Fatalf("load image: %v", err)
	}
	return d, svc
}

func TestDockerAgainstPodman(t *testing.T) {
	d, _ := startDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	v, err := d.Version(ctx)
	if err != nil || v.Version == "" {
		t.Fatalf("version: %+v %v", v, err)
	}
	if ok, err := d.ImageExists(ctx, testImage); !ok || err != nil {
		t.Fatalf("loaded image not found: %v %v", ok, err)
	}
	if ok, err := d.ImageExists(ctx, "localhost/no-such-image:1"); ok || err != nil {
		t.Fatalf("missing image: %v %v", ok, err)
	}
	id, err := d.CreateContainer(ctx, ContainerSpec{Name: "probe-0", Image: testImage,
		Cmd: []string{"sh", "-c", "echo out-line; echo err-line >&2; while true; do sleep 1; done"},
		Env: []string{"A=1"}, Labels: map[string]string{LabelNode: "52:54:00:00:00:01"}, MemoryBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	cs, err := d.Containers(ctx, LabelNode+"=52:54:00:00:00:01")
	if err != nil || len(cs) != 1 || cs[0].Name() != "probe-0" || cs[0].State != "running" {
		t.Fatalf("list by label: %+v %v", cs, err)
	}
	if other, _ := d.Containers(ctx, LabelNode+"=52:54:00:00:00:02"); len(other) != 0 {
		t.Fatalf("label filter leaks: %+v", other)
	}
	var logs string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if logs, err = d.Logs(ctx, id, 10); err == nil && strings.Contains(logs, "err-line") {
			break
		}
	}
	if !strings.Contains(logs, "out-line\n") || !strings.Contains(logs, "err-line\n") {
		t.Fatalf("logs: %q %v", logs, err)
	}
	s, err := d.Stats(ctx, id)
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	if s.MemoryBytes <= 0 {
		t.Errorf("stats show no memory use: %+v", s)
	}
	if err := d.RemoveContainer(ctx, id, time.Second); err != nil {
		t.Fatal(err)
	}
	if cs, _ := d.Containers(ctx, LabelNode+"=52:54:00:00:00:01"); len(cs) != 0 {
		t.Fatalf("container still there: %+v", cs)
	}
	if err := d.RemoveContainer(ctx, id, time.Second); err != nil {
		t.Fatalf("removing a removed container: %v", err)
	}
}

func TestDemuxLogs(t *testing.T) {
	frame := func(stream byte, s string) []byte {
		return append([]byte{stream, 0, 0, 0, 0, 0, 0, byte(len(s))}, s...)
	}
	in := append(frame(1, "a\n"), frame(2, "b\n")...)
	if got, err := demuxLogs(bytes.NewReader(in)); err != nil || got != "a\nb\n" {
		t.Errorf("multiplexed: %q %v", got, err)
	}
	if got, err := demuxLogs(strings.NewReader("plain tty output\n")); err != nil || got != "plain tty output\n" {
		t.Errorf("tty: %q %v", got, err)
	}
	if got, _ := demuxLogs(bytes.NewReader(frame(1, "cut")[:9])); got != "c" {
		t.Errorf("truncated: %q", got)
	}
}

func TestReconcile(t *testing.T) {
	d, svc := startDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const mac = "52:54:00:00:00:0a"
	a, err := New(Config{Servers: []string{"http://127.0.0.1:1"}, Node: mac, Token: "t", Docker: d, StopGrace: time.Second,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	// A container of someone else, and one of another node: never touched.
	foreign, err := d.CreateContainer(ctx, ContainerSpec{Name: "not-ours", Image: testImage, Cmd: []string{"sleep", "600"}})
	if err != nil {
		t.Fatal(err)
	}
	otherNode, err := d.CreateContainer(ctx, ContainerSpec{Name: "web-9", Image: testImage, Cmd: []string{"sleep", "600"}, Labels: map[string]string{LabelNode: "52:54:00:00:00:0b"}})
	if err != nil {
		t.Fatal(err)
	}
	sleeper := func(unit string, replica int, hash string) Assignment {
		return Assignment{Unit: unit, Replica: replica, Hash: hash, Image: testImage, Command: []string{"sh", "-c", "echo started $BOOTFLEET_UNIT; exec sleep 600"}, Env: map[string]string{"X": "y"}}
	}
	ours := func() map[string]Container {
		cs, err := d.Containers(ctx, LabelNode+"="+mac)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]Container{}
		for _, c := range cs {
			m[c.Name()] = c
		}
		return m
	}

	a.reconcile(ctx, []Assignment{sleeper("web", 0, "h1"), sleeper("web", 1, "h1")})
	got := ours()
	if len(got) != 2 || got["web-0"].State != "running" || got["web-1"].State != "running" || got["web-0"].Labels[LabelHash] != "h1" {
		t.Fatalf("after first reconcile: %+v", got)
	}
	firstID := got["web-0"].ID

	// Unchanged orders change nothing; a changed hash replaces; a dropped
	// replica goes.
	a.reconcile(ctx, []Assignment{sleeper("web", 0, "h1"), sleeper("web", 1, "h1")})
	if ours()["web-0"].ID != firstID {
		t.Fatal("reconcile replaced an unchanged container")
	}
	a.reconcile(ctx, []Assignment{sleeper("web", 0, "h2")})
	waitRemoved(t, a)
	got = ours()
	if len(got) != 1 || got["web-0"].ID == firstID || got["web-0"].Labels[LabelHash] != "h2" {
		t.Fatalf("after change: %+v", got)
	}

	// A container that dies is started again.
	if out, err := svc.Podman("kill", "web-0"); err != nil {
		t.Fatalf("podman kill: %v\n%s", err, out)
	}
	for deadline := time.Now().Add(10 * time.Second); ours()["web-0"].State == "running" && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
	}
	a.reconcile(ctx, []Assignment{sleeper("web", 0, "h2")})
	if st := ours()["web-0"].State; st != "running" {
		t.Fatalf("killed container not restarted: %s", st)
	}
	if hb := a.sample(ctx); len(hb) != 1 || hb[0].Restarts < 1 || hb[0].State != "running" {
		t.Fatalf("heartbeat after restart: %+v", hb)
	}

	// An image that exists nowhere fails with the reason, others go on.
	a.reconcile(ctx, []Assignment{sleeper("web", 0, "h2"), {Unit: "ghost", Replica: 0, Hash: "g", Image: "localhost/nowhere:1"}})
	var ghost ContainerStatus
	for _, st := range a.sample(ctx) {
		if st.Unit == "ghost" {
			ghost = st
		}
	}
	if ghost.State != "failed" || !strings.Contains(ghost.Error, "localhost/nowhere:1") {
		t.Fatalf("missing image status: %+v", ghost)
	}

	a.reconcile(ctx, []Assignment{})
	waitRemoved(t, a)
	if got := ours(); len(got) != 0 {
		t.Fatalf("empty orders left %+v", got)
	}
	for _, id := range []string{foreign, otherNode} {
		if _, err := d.InspectContainer(ctx, id); err != nil {
			t.Fatalf("reconcile touched a container that is not its own: %v", err)
		}
	}
}

// waitRemoved waits for the agent's background removals to end.
func waitRemoved(t *testing.T, a *Agent) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		a.mu.Lock()
		n := len(a.removing)
		a.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("removals still running after 20s")
		}
	}
}
