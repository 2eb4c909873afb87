package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/bootfleet/bootfleet/registry"
)

// startEtcd runs a real etcd member (embedded in the test process) that a
// bootfleet server uses as its external cluster.
func startEtcd(t *testing.T, dir, client, peer string) *registry.Embedded {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e, err := registry.StartEmbedded(ctx, registry.EmbeddedConfig{Dir: dir, ListenClient: client, ListenPeer: peer})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// TestExternalEtcd: serve on an external etcd with user/password; when etcd
// goes away, boot files keep being served and /healthz says why; when it is
// back, the inventory catches up with what was served meanwhile.
func TestExternalEtcd(t *testing.T) {
	dir, client, peer := t.TempDir(), "http://"+freePort(t), "http://"+freePort(t)
	etcd := startEtcd(t, dir, client, peer)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{client}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := cli.UserAdd(ctx, "root", "s3cret"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.UserGrantRole(ctx, "root", "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.AuthEnable(ctx); err != nil {
		t.Fatal(err)
	}
	cli.Close()

	// A wrong password stops start-up with a clear message.
	_, stderr, code := runEnv(t, []string{"BOOTFLEET_ETCD_PASSWORD=wrong"}, "serve", "--http", freePort(t), "--data-dir", t.TempDir(), "--tftp=false",
		"--profiles", exampleDir(), "--etcd-endpoints", client, "--etcd-username", "root")
	if code == 0 || !strings.Contains(stderr, "etcd") {
		t.Fatalf("serve with a wrong etcd password: exit %d\n%s", code, stderr)
	}

	t.Setenv("BOOTFLEET_ETCD_PASSWORD", "s3cret")
	s := startServer(t, "--profiles", exampleDir(), "--etcd-endpoints", client, "--etcd-username", "root")
	cliArgs := []string{"--server", s.URL, "--data-dir", s.DataDir}
	curl(t, "-f", s.URL+"/ipxe?mac=52:54:00:cc:00:01")
	waitFor(t, "the first node in the inventory", func() bool {
		out, _, code := run(t, append([]string{"nodes", "show", "52:54:00:cc:00:01", "-o", "json"}, cliArgs...)...)
		return code == 0 && strings.Contains(out, `"booting"`)
	})

	etcd.Close()
	waitFor(t, "/healthz to report etcd down", func() bool {
		_, body := get(t, s.URL+"/healthz")
		return strings.Contains(body, "etcd:")
	})
	for _, mac := range []string{"52:54:00:cc:00:01", "52:54:00:cc:00:02"} {
		if code, body := get(t, s.URL+"/ipxe?mac="+mac); code != http.StatusOK || !strings.Contains(body, "kernel ") {
			t.Fatalf("with etcd down, /ipxe for %s: %d %s", mac, code, body)
		}
	}

	startEtcd(t, dir, client, peer)
	waitFor(t, "/healthz to recover", func() bool {
		_, body := get(t, s.URL+"/healthz")
		return body == "ok\n"
	})
	waitFor(t, "the node booted during the outage to be recorded", func() bool {
		out, _, code := run(t, append([]string{"nodes", "show", "52:54:00:cc:00:02", "-o", "json"}, cliArgs...)...)
		return code == 0 && strings.Contains(out, `"booting"`)
	})
}

// TestKill9KeepsInventory: nodes recorded before a kill -9 are all there
// after a restart on the same data dir.
func TestKill9KeepsInventory(t *testing.T) {
	dataDir, addr, client, peer := t.TempDir(), freePort(t), "http://"+freePort(t), "http://"+freePort(t)
	s := startServerIn(t, dataDir, addr, client, peer, "--profiles", exampleDir())
	const n = 30
	for i := range n {
		curl(t, "-f", "-o", "/dev/null", fmt.Sprintf("%s/ipxe?mac=52:54:00:dd:00:%02x", s.URL, i))
	}
	list := func() []map[string]any {
		out, _, code := run(t, "nodes", "list", "-o", "json", "--server", s.URL, "--data-dir", dataDir)
		var nodes []map[string]any
		if code != 0 || json.Unmarshal([]byte(out), &nodes) != nil {
			return nil
		}
		return nodes
	}
	waitFor(t, "every node recorded", func() bool { return len(list()) == n })
	before := list()

	if err := s.cmd.Process.Kill(); err != nil { // SIGKILL: no shutdown path runs
		t.Fatal(err)
	}
	<-s.done
	s.done <- nil
	s = startServerIn(t, dataDir, addr, client, peer, "--profiles", exampleDir())
	after := list()
	if len(after) != n {
		t.Fatalf("after kill -9 and restart: %d nodes, want %d", len(after), n)
	}
	for i := range before {
		if before[i]["mac"] != after[i]["mac"] || before[i]["state"] != after[i]["state"] {
			t.Errorf("node %d changed: %v → %v", i, before[i], after[i])
		}
	}
}
