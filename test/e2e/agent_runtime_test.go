package e2e

import (
	"encoding/json"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bootfleet/bootfleet/internal/podmantest"
	"github.com/bootfleet/bootfleet/registry"
)

// An agent that starts before its container runtime (on a node, the agent
// unit may come up before the Docker or podman socket) joins with the
// runtime's error, and joins again with the runtime's facts as soon as it
// answers — without a reconnect or a restart.
func TestAgentRuntimeLate(t *testing.T) {
	pm := podmantest.Start(t)
	dataDir := t.TempDir()
	addr, etcdClient, etcdPeer := freePort(t), "http://"+freePort(t), "http://"+freePort(t)
	s := startServerIn(t, dataDir, addr, etcdClient, etcdPeer,
		"--profiles", filepath.Join(repoRoot(), "examples/lab"), "--agent-dir", agentBinaries(t), "--node-ttl", "3s")

	// The agent's socket does not exist yet.
	late := filepath.Join(t.TempDir(), "late.sock")
	mac := "52:54:00:aa:00:31"
	provision(t, s, mac, &podmantest.Service{Host: "unix://" + late})

	node := func() registry.Node {
		out, errOut, code := run(t, "nodes", "show", mac, "-o", "json", "--server", s.URL, "--data-dir", s.DataDir)
		if code != 0 {
			t.Fatalf("nodes show: exit %d\n%s", code, errOut)
		}
		var n registry.Node
		if err := json.Unmarshal([]byte(out), &n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitUntil(t, "the agent joined without a runtime", 30*time.Second, func() bool {
		n := node()
		return n.Agent != nil && n.Agent.RuntimeError != "" && n.Agent.Runtime == ""
	})

	// The runtime comes up: its socket appears (a proxy to podman's).
	ln, err := net.Listen("unix", late)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	podmanSock := strings.TrimPrefix(pm.Host, "unix://")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("unix", podmanSock)
				if err != nil {
					return
				}
				defer u.Close()
				go io.Copy(u, c)
				io.Copy(c, u)
			}()
		}
	}()
	waitUntil(t, "the agent joined again with the runtime's facts", 30*time.Second, func() bool {
		n := node()
		return n.State == registry.StateReady && n.Agent != nil && n.Agent.Runtime == "podman" && n.Agent.RuntimeError == ""
	})
}
