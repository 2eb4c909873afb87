package e2e

import (
	"encoding/json"
	"net"
	"strings"
	"testing"

	"github.com/bootfleet/bootfleet/dhcp"
	"github.com/bootfleet/bootfleet/internal/netnstest"
	"github.com/bootfleet/bootfleet/registry"
)

// TestKill9DuringDHCPBurst: bootfleet is killed (SIGKILL) the moment a burst
// of DHCP clients has been acknowledged. Restarted on the same data dir, its
// inventory has every acknowledged MAC, its leases match what the clients
// hold, and a client that asks again gets the same address.
func TestKill9DuringDHCPBurst(t *testing.T) {
	p := netnstest.New(t, "10.77.11.1/24")
	dataDir := t.TempDir()
	serverURL := "http://10.77.11.1:8080"
	start := func() *nsServer {
		return startServeIn(t, p.Server, serverURL+"/healthz", "--profiles", exampleDir(), "--data-dir", dataDir,
			"--http", "10.77.11.1:8080", "--tftp=false", "--dhcp", "full", "--interface", p.ServerIf,
			"--dhcp-pool-start", "10.77.11.10", "--dhcp-pool-end", "10.77.11.250", "--router-advertisements=false",
			"--etcd-listen-client", "http://127.0.0.1:2379", "--etcd-listen-peer", "http://127.0.0.1:2380", "--log-level", "warn")
	}
	srv := start()

	const n = 150
	macs := make([]net.HardwareAddr, n)
	for i := range macs {
		macs[i] = net.HardwareAddr{0x02, 0xbf, 0x11, 0, byte(i >> 8), byte(i)}
	}
	got, err := netnstest.DORA(p.Client, p.ClientIf, macs)
	if err != nil {
		t.Fatal(err)
	}
	srv.cmd.Process.Kill() // at once: events of the last ACKs may still be queued
	<-srv.done

	start()
	cli := func(args ...string) string {
		out, errOut, code := runBinEnv(t, "ip", nil, append([]string{"netns", "exec", p.Server, bootfleet(t)}, append(args, "--server", serverURL, "--data-dir", dataDir)...)...)
		if code != 0 {
			t.Fatalf("bootfleet %s: %s", strings.Join(args, " "), errOut)
		}
		return out
	}
	var nodes []registry.Node
	waitFor(t, "every acknowledged MAC in the inventory", func() bool {
		nodes = nil
		if json.Unmarshal([]byte(cli("nodes", "list", "-o", "json")), &nodes) != nil {
			return false
		}
		have := map[string]bool{}
		for _, nd := range nodes {
			have[nd.MAC] = true
		}
		for mac := range got {
			if !have[mac] {
				return false
			}
		}
		return true
	})
	var leases []dhcp.Lease
	if err := json.Unmarshal([]byte(cli("leases", "-o", "json")), &leases); err != nil {
		t.Fatal(err)
	}
	held := map[string]string{}
	for _, l := range leases {
		if l.State == dhcp.StateBound {
			held[l.MAC] = l.IP.String()
		}
	}
	for mac, b := range got {
		if held[mac] != b.IP {
			t.Errorf("%s holds %s, the server's lease says %q", mac, b.IP, held[mac])
		}
	}
	again, err := netnstest.DORA(p.Client, p.ClientIf, macs[n-3:])
	if err != nil {
		t.Fatal(err)
	}
	for mac, b := range again {
		if got[mac].IP != b.IP {
			t.Errorf("%s asked again and got %s, had %s", mac, b.IP, got[mac].IP)
		}
	}
	t.Logf("%d clients acknowledged before the kill; %d nodes in the inventory after", len(got), len(nodes))
}
