package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bootfleet/bootfleet/internal/netnstest"
	"github.com/bootfleet/bootfleet/storm"
)

// TestBootStorm boots 50 simulated machines at once against a real
// `bootfleet serve` (DHCP full, TFTP, HTTP, embedded etcd, the agent
// binary) in a server namespace, with `bootfleet bench storm` in a client
// namespace: half of them PXE firmware fetching iPXE over TFTP, all of them
// DHCP as iPXE, scripts, kernel, initrd, Ignition, the agent download, join
// and heartbeats. Every machine must be ready with no failed request, and
// the inventory must hold each one ready with its whole boot on its
// timeline.
func TestBootStorm(t *testing.T) {
	const nodes = 50
	p := netnstest.New(t, "10.77.12.1/16")
	if out, err := exec.Command("ip", "-n", p.Client, "addr", "add", "10.77.12.2/16", "dev", p.ClientIf).CombinedOutput(); err != nil {
		t.Fatalf("client address: %v\n%s", err, out)
	}
	// The example profiles with small stand-in kernel and initrd.
	profilesDir := filepath.Join(t.TempDir(), "profiles")
	copyDir(t, exampleDir(), profilesDir)
	assets := filepath.Join(profilesDir, "assets", "flatcar", "amd64")
	if err := os.MkdirAll(assets, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, size := range map[string]int{"flatcar_production_pxe.vmlinuz": 1 << 20, "flatcar_production_pxe_image.cpio.gz": 3 << 20} {
		if err := os.WriteFile(filepath.Join(assets, name), []byte(strings.Repeat("k", size)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dataDir := t.TempDir()
	serverURL := "http://10.77.12.1:8080"
	srv := startServeIn(t, p.Server, serverURL+"/healthz", "--profiles", profilesDir, "--data-dir", dataDir,
		"--http", "10.77.12.1:8080", "--tftp-listen", "10.77.12.1:69", "--agent-dir", agentBinaries(t),
		"--dhcp", "full", "--interface", p.ServerIf, "--dhcp-pool-start", "10.77.13.0", "--dhcp-pool-end", "10.77.13.200",
		"--dhcp-router", "10.77.12.1", "--router-advertisements=false", "--log-level", "warn",
		// Long enough that the machines are still ready (not lost) when checked.
		"--node-ttl", "2m",
		"--etcd-listen-client", "http://127.0.0.1:2379", "--etcd-listen-peer", "http://127.0.0.1:2380").cmd

	report := filepath.Join(t.TempDir(), "storm.json")
	cmd := netnstest.Command(p.Client, bootfleet(t), "bench", "storm", "--server", serverURL, "--interface", p.ClientIf,
		"--nodes", strconv.Itoa(nodes), "--pxe-share", "0.5", "--heartbeats", "2", "--heartbeat-interval", "300ms",
		"--request-timeout", "60s", "--server-pid", strconv.Itoa(srv.Process.Pid), "--json", report)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("storm: %v\n%s", err, out)
	}
	var rep storm.Report
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Ready != nodes || rep.Complete != nodes || rep.Failures() != 0 {
		t.Fatalf("%d ready, %d complete, %d failed requests; want all %d and none\n%s", rep.Ready, rep.Complete, rep.Failures(), nodes, out)
	}
	for phase, want := range map[string]int64{
		storm.PhaseDHCPPXE: nodes / 2, storm.PhaseTFTP: nodes / 2, storm.PhaseDHCPIPXE: nodes,
		storm.PhaseBootScript: nodes, storm.PhaseIPXEScript: nodes, storm.PhaseKernel: nodes, storm.PhaseInitrd: nodes,
		storm.PhaseIgnition: nodes, storm.PhaseAgentBinary: nodes, storm.PhaseJoin: nodes, storm.PhaseHeartbeat: 2 * nodes,
	} {
		if st, ok := rep.Phase(phase); !ok || st.Count != want || st.Failures != 0 {
			t.Errorf("phase %s: %+v, want %d runs without failure", phase, st, want)
		}
	}
	if k, _ := rep.Phase(storm.PhaseKernel); k.Bytes != nodes<<20 {
		t.Errorf("kernel bytes %d, want %d", k.Bytes, nodes<<20)
	}
	if rep.Server == nil || rep.Server.Samples == 0 || rep.Server.PeakRSSMiB <= 0 {
		t.Errorf("no server usage sampled: %+v", rep.Server)
	}
	// The server's metrics saw what the machines did.
	metrics := map[string]float64{}
	for _, m := range rep.Metrics {
		metrics[m.Name] = m.Count
	}
	for name, want := range map[string]float64{
		"bootfleet_http_requests_total{code=200,endpoint=ignition}":                          nodes,
		"bootfleet_tftp_transfer_duration_seconds":                                           nodes / 2,
		"bootfleet_api_request_duration_seconds{method=POST,route=/api/v1/agent/{mac}/join}": nodes,
		"bootfleet_dhcp_replies_total{type=ACK}":                                             nodes + nodes/2,
		"bootfleet_registry_events_written_total":                                            nodes * 8,
	} {
		if metrics[name] < want {
			t.Errorf("metric %s counted %v, want %v", name, metrics[name], want)
		}
	}

	// The inventory: every machine ready, its boot on its timeline in order.
	cli := []string{"--server", serverURL, "--data-dir", dataDir}
	var list []struct{ MAC, State string }
	waitFor(t, "every machine ready in the inventory", func() bool {
		out, err := netnstest.Command(p.Server, bootfleet(t), append([]string{"nodes", "list", "-o", "json"}, cli...)...).Output()
		if err != nil || json.Unmarshal(out, &list) != nil {
			return false
		}
		ready := 0
		for _, n := range list {
			if strings.HasPrefix(n.MAC, "02:bf:00:") && n.State == "ready" {
				ready++
			}
		}
		return ready == nodes
	})
	want := []string{"dhcp.discover", "dhcp.offer", "dhcp.request", "dhcp.ack", "ipxe", "asset", "asset", "ignition", "agent.join"}
	for i := range nodes {
		mac := fmt.Sprintf("02:bf:00:00:00:%02x", i)
		var node struct {
			State    string
			Timeline []struct {
				Time  time.Time
				Event string
			}
		}
		out, err := netnstest.Command(p.Server, bootfleet(t), append([]string{"nodes", "show", mac, "-o", "json"}, cli...)...).Output()
		if err != nil || json.Unmarshal(out, &node) != nil {
			t.Fatalf("nodes show %s: %v\n%s", mac, err, out)
		}
		var events []string
		for j, e := range node.Timeline {
			events = append(events, e.Event)
			if j > 0 && e.Time.Before(node.Timeline[j-1].Time) {
				t.Errorf("%s: timeline out of order at %s", mac, e.Event)
			}
		}
		// Each step in order (PXE machines have a second DHCP exchange first).
		rest := events
		for _, w := range want {
			k := slices.Index(rest, w)
			if k < 0 {
				t.Errorf("%s: timeline %v lacks %s in order", mac, events, w)
				break
			}
			rest = rest[k+1:]
		}
		if node.State != "ready" {
			t.Errorf("%s: state %s", mac, node.State)
		}
	}
}
