package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bootfleet/bootfleet/agent"
	"github.com/bootfleet/bootfleet/fleet"
	"github.com/bootfleet/bootfleet/internal/podmantest"
	"github.com/bootfleet/bootfleet/registry"
)

var (
	agentOnce sync.Once
	agentDir  string
	agentErr  error
)

// agentBinaries builds bootfleet-agent-amd64 into a directory the server
// serves at /agent/.
func agentBinaries(t *testing.T) string {
	t.Helper()
	agentOnce.Do(func() {
		agentDir, agentErr = os.MkdirTemp("", "bootfleet-e2e-agent-")
		if agentErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(agentDir, "bootfleet-agent-amd64"), "./cmd/bootfleet-agent")
		cmd.Dir = repoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOARCH=amd64")
		if out, err := cmd.CombinedOutput(); err != nil {
			agentErr = fmt.Errorf("go build agent: %v\n%s", err, out)
		}
	})
	if agentErr != nil {
		t.Fatal(agentErr)
	}
	return agentDir
}

// node is a simulated machine: its own container runtime, and the agent
// its Ignition installed and started.
type node struct {
	mac    string
	root   string // what Ignition wrote
	podman *podmantest.Service
	cmd    *exec.Cmd
	log    *syncBuffer
	done   chan error
}

// provision does what a booted machine does: fetch its Ignition from the
// server, apply it (the agent's env file and binary, downloaded from the
// server), and start the agent it installed.
func provision(t *testing.T, s *server, mac string, pm *podmantest.Service) *node {
	t.Helper()
	n := &node{mac: mac, root: t.TempDir(), podman: pm}
	cfgPath := filepath.Join(n.root, "ignition.json")
	if err := os.WriteFile(cfgPath, []byte(curl(t, "--fail", s.URL+"/ignition?mac="+mac)), 0o600); err != nil {
		t.Fatal(err)
	}
	// The installer is the agent binary the server serves, as on a node.
	installer := filepath.Join(t.TempDir(), "bootfleet-agent")
	curl(t, "--fail", "-o", installer, s.URL+"/agent/bootfleet-agent-amd64")
	if err := os.Chmod(installer, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(installer, "ignition-apply", "--root", n.root, cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("ignition-apply: %v\n%s", err, out)
	}
	env, err := os.ReadFile(filepath.Join(n.root, "etc/bootfleet/agent.env"))
	if err != nil || !strings.Contains(string(env), "BOOTFLEET_NODE="+mac) || !strings.Contains(string(env), "BOOTFLEET_TOKEN=") {
		t.Fatalf("Ignition did not install the agent's env file: %q %v", env, err)
	}
	if _, err := os.ReadFile(filepath.Join(n.root, "etc/systemd/system/bootfleet-agent.service")); err != nil {
		t.Fatalf("Ignition did not install the agent's unit: %v", err)
	}
	n.start(t)
	return n
}

func (n *node) start(t *testing.T) {
	t.Helper()
	n.log, n.done = &syncBuffer{}, make(chan error, 1)
	n.cmd = exec.Command(filepath.Join(n.root, "opt/bootfleet/bin/bootfleet-agent"),
		"--env-file", filepath.Join(n.root, "etc/bootfleet/agent.env"), "--docker-host", n.podman.Host)
	n.cmd.Stderr = n.log
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("start agent: %v", err)
	}
	cmd, done, log := n.cmd, n.done, n.log
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("agent %s log:\n%s", n.mac, log.String())
		}
	})
}

// kill9 kills the agent as a machine dying would.
func (n *node) kill9(t *testing.T) {
	t.Helper()
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	err := <-n.done
	n.done <- err
}

// containers returns name → node label of the running unit containers in
// the node's runtime, read through its Engine API.
func (n *node) containers(t *testing.T) map[string]string {
	t.Helper()
	d, err := agent.NewDocker(n.podman.Host)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs, err := d.Containers(ctx, agent.LabelUnit)
	if err != nil {
		t.Fatalf("list containers: %v", err)
	}
	m := map[string]string{}
	for _, c := range cs {
		if c.State == "running" {
			m[c.Name()] = c.Labels[agent.LabelNode]
		}
	}
	return m
}

func waitUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestFleetEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts podman services and agents")
	}
	pmA, pmB := podmantest.Start(t), podmantest.Start(t)
	dataDir := t.TempDir()
	// The image reaches the nodes only through bootfleet (no registry).
	const image = "localhost/bootfleet-test/busybox:1"
	archives := filepath.Join(dataDir, "container-images")
	if err := os.MkdirAll(archives, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(archives, "busybox.tar"), podmantest.BusyboxArchive(t, image), 0o644); err != nil {
		t.Fatal(err)
	}
	addr, etcdClient, etcdPeer := freePort(t), "http://"+freePort(t), "http://"+freePort(t)
	serverArgs := []string{"--profiles", filepath.Join(repoRoot(), "examples/lab"), "--agent-dir", agentBinaries(t), "--node-ttl", "3s"}
	s := startServerIn(t, dataDir, addr, etcdClient, etcdPeer, serverArgs...)
	cli := func(args ...string) string {
		t.Helper()
		out, errOut, code := run(t, append(args, "--server", s.URL, "--data-dir", s.DataDir)...)
		if code != 0 {
			t.Fatalf("bootfleet %s: exit %d\n%s", strings.Join(args, " "), code, errOut)
		}
		return out
	}
	macA, macB := "52:54:00:aa:00:01", "52:54:00:aa:00:02"
	nodeA := provision(t, s, macA, pmA)
	nodeB := provision(t, s, macB, pmB)

	waitUntil(t, "both nodes ready", 20*time.Second, func() bool {
		var nodes []registry.Node
		if err := json.Unmarshal([]byte(cli("nodes", "list", "-o", "json")), &nodes); err != nil {
			t.Fatal(err)
		}
		ready := 0
		for _, n := range nodes {
			if n.State == registry.StateReady && n.Agent != nil && n.Agent.Runtime == "podman" && n.Agent.MemoryBytes > 0 {
				ready++
			}
		}
		return ready == 2
	})

	// A node's token is its own: wrong tokens and other nodes' are refused.
	tokenA := strings.TrimPrefix(grepLine(t, filepath.Join(nodeA.root, "etc/bootfleet/agent.env"), "BOOTFLEET_TOKEN="), "BOOTFLEET_TOKEN=")
	for _, c := range []struct{ mac, token string }{{macB, tokenA}, {macA, "nope"}, {macA, ""}} {
		code := curl(t, "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H", "Authorization: Bearer "+c.token, "-d", "{}", s.URL+"/api/v1/agent/"+c.mac+"/heartbeat")
		if code != "401" {
			t.Errorf("heartbeat for %s with a foreign token: HTTP %s, want 401", c.mac, code)
		}
	}

	unitFile := filepath.Join(t.TempDir(), "web.yaml")
	os.WriteFile(unitFile, []byte(`name: web
image: `+image+`
command: ["sh", "-c", "echo hello from $BOOTFLEET_NODE replica $BOOTFLEET_REPLICA; exec sleep 600"]
replicas: 2
resources: {memory: 64m}
`), 0o644)
	// An invalid unit file: every error with its line, nothing submitted.
	badFile := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(badFile, []byte("name: bad\nimage: x\nreplicas: -1\nconstraint: {}\n"), 0o644)
	if _, errOut, code := run(t, "units", "submit", badFile, "--server", s.URL, "--data-dir", s.DataDir); code == 0 || !strings.Contains(errOut, "bad.yaml:4:1") {
		t.Fatalf("bad unit file: exit %d, stderr %q", code, errOut)
	}
	submitted := time.Now()
	cli("units", "submit", unitFile)
	waitUntil(t, "one web replica on each node", 60*time.Second, func() bool {
		a, b := nodeA.containers(t), nodeB.containers(t)
		return len(a) == 1 && len(b) == 1 && (a["web-0"] == macA || a["web-1"] == macA) && (b["web-0"] == macB || b["web-1"] == macB)
	})
	t.Logf("FIGURE unit submitted to both replicas running (image loaded from the server): %s", time.Since(submitted).Round(10*time.Millisecond))

	logs := cli("units", "logs", "web", "--replica", "0")
	if !strings.Contains(logs, "hello from 52:54:00:aa:00:0") || !strings.Contains(logs, "replica 0") {
		t.Fatalf("units logs: %q", logs)
	}
	waitUntil(t, "container memory in units status and /metrics", 20*time.Second, func() bool {
		var units []fleet.UnitStatus
		json.Unmarshal([]byte(cli("units", "status", "web", "-o", "json")), &units)
		if len(units) != 1 || len(units[0].Containers) != 2 {
			return false
		}
		for _, c := range units[0].Containers {
			if c.State != "running" || c.MemoryBytes <= 0 {
				return false
			}
		}
		return strings.Contains(curl(t, s.URL+"/metrics"), `bootfleet_unit_container_memory_bytes{node="`+macA+`",replica=`)
	})
	if table := cli("units", "list"); !strings.Contains(table, "web") || !strings.Contains(table, "2") {
		t.Fatalf("units list: %s", table)
	}

	// Constraints on real agents: a global unit runs everywhere; a pinned
	// unit, one that conflicts with it, one that follows it, and a label
	// set by the operator steers one.
	cli("nodes", "label", macB, "tier=edge")
	sleeper := "image: " + image + "\ncommand: [sleep, \"600\"]\n"
	placed := filepath.Join(t.TempDir(), "placed.yaml")
	os.WriteFile(placed, []byte("name: everywhere\nglobal: true\n"+sleeper+
		"---\nname: db-main\nconstraints: {node: \""+macA+"\"}\n"+sleeper+
		"---\nname: apart\nconstraints: {conflicts: [\"db-*\"]}\n"+sleeper+
		"---\nname: beside-db\nconstraints: {machine_of: db-main}\n"+sleeper+
		"---\nname: edge\nconstraints: {metadata: {tier: edge}}\n"+sleeper), 0o644)
	cli("units", "submit", placed)
	want := map[string]map[string]string{
		macA: {"everywhere-0": macA, "db-main-0": macA, "beside-db-0": macA},
		macB: {"everywhere-0": macB, "apart-0": macB, "edge-0": macB},
	}
	waitUntil(t, "constrained units where they belong", 60*time.Second, func() bool {
		for n, wantOn := range map[*node]map[string]string{nodeA: want[macA], nodeB: want[macB]} {
			have := n.containers(t)
			for name, mac := range wantOn {
				if have[name] != mac {
					return false
				}
			}
			if len(have) != len(wantOn)+1 { // and its web replica
				return false
			}
		}
		return true
	})
	cli("units", "destroy", "everywhere", "db-main", "apart", "beside-db", "edge")
	waitUntil(t, "constrained units gone", 30*time.Second, func() bool {
		return len(nodeA.containers(t)) == 1 && len(nodeB.containers(t)) == 1
	})

	// Node A dies: after the TTL it is lost and its replica moves to B.
	killed := time.Now()
	nodeA.kill9(t)
	waitUntil(t, "both web replicas on node B", 30*time.Second, func() bool {
		b := nodeB.containers(t)
		return b["web-0"] == macB && b["web-1"] == macB
	})
	// The target is TTL + 2 s (bench/RESULTS.md records the figure); the
	// test fails only past TTL + 5 s, so a busy CI machine does not make
	// a timing out of a function.
	moved := time.Since(killed)
	t.Logf("FIGURE kill -9 of an agent to its replica running on another node (TTL 3s; target TTL + 2s): %s", moved.Round(10*time.Millisecond))
	if moved > 3*time.Second+5*time.Second {
		t.Errorf("replica running on another node %s after the kill; want it within TTL (3s) + 2s, and never past TTL + 5s", moved)
	}
	if show := cli("nodes", "show", macA); !strings.Contains(show, "lost") || !strings.Contains(show, "agent.lost") {
		t.Fatalf("nodes show of the dead node:\n%s", show)
	}

	// A comes back: its stale container goes, nothing is duplicated.
	nodeA.start(t)
	waitUntil(t, "node A's stale container removed", 30*time.Second, func() bool { return len(nodeA.containers(t)) == 0 })
	if b := nodeB.containers(t); len(b) != 2 {
		t.Fatalf("node B after A's return: %v", b)
	}

	// A unit that cannot be placed says why.
	os.WriteFile(unitFile, []byte("name: picky\nimage: "+image+"\nconstraints: {metadata: {role: db}}\n"), 0o644)
	cli("units", "submit", unitFile)
	waitUntil(t, "pending reason", 10*time.Second, func() bool {
		return strings.Contains(cli("units", "status", "picky"), "no label role=db")
	})

	// The agent's budget: ≤ 12 MB stripped, ≤ 15 MB resident while it runs
	// two containers.
	bin, err := os.Stat(filepath.Join(nodeB.root, "opt/bootfleet/bin/bootfleet-agent"))
	if err != nil {
		t.Fatal(err)
	}
	rss := residentKiB(t, nodeB.cmd.Process.Pid)
	before := cpuTicks(t, nodeB.cmd.Process.Pid)
	time.Sleep(5 * time.Second)
	t.Logf("FIGURE agent CPU while idle with two containers, heartbeat every 1s: %.2f%% of a core",
		float64(cpuTicks(t, nodeB.cmd.Process.Pid)-before)/100/5*100)
	t.Logf("FIGURE agent binary %.1f MB stripped, resident %.1f MiB", float64(bin.Size())/1e6, float64(rss)/1024)
	if bin.Size() > 12e6 || rss > 15*1024 {
		t.Errorf("agent over budget: binary %d bytes (max 12 MB), resident %d KiB (max 15 MiB)", bin.Size(), rss)
	}

	cli("units", "destroy", "web", "picky")
	waitUntil(t, "containers removed", 30*time.Second, func() bool { return len(nodeB.containers(t)) == 0 })

	// SIGTERM with agents in their long polls: a clean, prompt exit. The
	// agents survive the restart: they rejoin and run what is assigned.
	if err := s.stop(t); err != nil {
		t.Errorf("serve with agents connected exited with %v after SIGTERM, want a clean exit", err)
	}
	s = startServerIn(t, dataDir, addr, etcdClient, etcdPeer, serverArgs...)
	os.WriteFile(unitFile, []byte("name: after-restart\nimage: "+image+"\ncommand: [sleep, \"600\"]\nglobal: true\n"), 0o644)
	cli("units", "submit", unitFile)
	waitUntil(t, "both agents back and running the new unit", 30*time.Second, func() bool {
		return nodeA.containers(t)["after-restart-0"] == macA && nodeB.containers(t)["after-restart-0"] == macB
	})
}

func grepLine(t *testing.T, path, prefix string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	t.Fatalf("%s has no line %s…", path, prefix)
	return ""
}

// residentKiB is a process's resident set size (VmRSS) in KiB.
func residentKiB(t *testing.T, pid int) int {
	t.Helper()
	line := grepLine(t, fmt.Sprintf("/proc/%d/status", pid), "VmRSS:")
	var kib int
	if _, err := fmt.Sscanf(strings.TrimPrefix(line, "VmRSS:"), "%d", &kib); err != nil {
		t.Fatalf("VmRSS of %d: %q: %v", pid, line, err)
	}
	return kib
}

// TestAgentFailsOverBetweenServers: two bootfleet servers on one etcd; the
// agent knows both. Its server dies: it carries on with the other before
// its node is lost, and its container is untouched.
func TestAgentFailsOverBetweenServers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts podman and two servers")
	}
	pm := podmantest.Start(t)
	etcdClient := "http://" + freePort(t)
	dataDir := t.TempDir()
	const image = "localhost/bootfleet-test/busybox:1"
	os.MkdirAll(filepath.Join(dataDir, "container-images"), 0o755)
	os.WriteFile(filepath.Join(dataDir, "container-images", "busybox.tar"), podmantest.BusyboxArchive(t, image), 0o644)
	common := []string{"--profiles", filepath.Join(repoRoot(), "examples/lab"), "--agent-dir", agentBinaries(t), "--node-ttl", "4s"}
	s1 := startServerIn(t, dataDir, freePort(t), etcdClient, "http://"+freePort(t), common...)
	s2 := startServerIn(t, t.TempDir(), freePort(t), "http://"+freePort(t), "http://"+freePort(t), append(common, "--etcd-endpoints", etcdClient)...)

	mac := "52:54:00:aa:00:07"
	n := provision(t, s2, mac, pm)
	// The node knows both servers, its own first (as a lab would write).
	envPath := filepath.Join(n.root, "etc/bootfleet/agent.env")
	env, _ := os.ReadFile(envPath)
	os.WriteFile(envPath, []byte(strings.Replace(string(env), "BOOTFLEET_SERVER="+s2.URL, "BOOTFLEET_SERVER="+s2.URL+","+s1.URL, 1)), 0o600)
	n.kill9(t)
	n.start(t)

	unitFile := filepath.Join(t.TempDir(), "pinned.yaml")
	os.WriteFile(unitFile, []byte("name: pinned\nimage: "+image+"\ncommand: [sleep, \"600\"]\nconstraints: {node: \""+mac+"\"}\n"), 0o644)
	if _, errOut, code := run(t, "units", "submit", unitFile, "--server", s1.URL, "--data-dir", s1.DataDir); code != 0 {
		t.Fatalf("submit: %s", errOut)
	}
	var id string
	waitUntil(t, "the container running", 60*time.Second, func() bool {
		for name := range n.containers(t) {
			if name == "pinned-0" {
				return true
			}
		}
		return false
	})
	d, _ := agent.NewDocker(pm.Host)
	cs, _ := d.Containers(context.Background(), agent.LabelUnit+"=pinned")
	id = cs[0].ID

	// s2 dies; the agent moves to s1 within the TTL: never lost.
	s2.cmd.Process.Kill()
	<-s2.done
	s2.done <- nil
	waitUntil(t, "the agent on s1", 15*time.Second, func() bool {
		return strings.Contains(n.log.String(), `msg="trying the next server" server=`+s1.URL)
	})
	time.Sleep(5 * time.Second) // longer than the TTL
	show, errOut, code := run(t, "nodes", "show", mac, "--server", s1.URL, "--data-dir", s1.DataDir)
	if code != 0 {
		t.Fatal(errOut)
	}
	if strings.Contains(show, "agent.lost") || !strings.Contains(show, "ready") {
		t.Fatalf("node after failover:\n%s", show)
	}
	cs, _ = d.Containers(context.Background(), agent.LabelUnit+"=pinned")
	if len(cs) != 1 || cs[0].ID != id || cs[0].State != "running" {
		t.Fatalf("container after failover: %+v (was %s)", cs, id)
	}
}

// cpuTicks is a process's user+system CPU time in clock ticks (1/100 s).
func cpuTicks(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command (which may hold spaces) start after ")".
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	var utime, stime int
	fmt.Sscan(f[11], &utime)
	fmt.Sscan(f[12], &stime)
	return utime + stime
}
