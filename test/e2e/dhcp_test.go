package e2e

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bootfleet/bootfleet/internal/netnstest"
	"github.com/bootfleet/bootfleet/ipxe"
)

// TestDHCPBootPath runs `bootfleet serve --dhcp full` inside a server
// namespace and plays a machine in the client namespace with real clients:
// busybox udhcpc as iPXE (user class iPXE) gets an address and the script
// URL, curl fetches the script and the Ignition config over the veth, and
// the lease and the whole timeline are visible with the CLI.
func TestDHCPBootPath(t *testing.T) {
	if _, err := exec.LookPath("busybox"); err != nil {
		t.Fatal("busybox is not installed: `make test` installs it")
	}
	p := netnstest.New(t, "10.77.8.1/24")
	dataDir := t.TempDir()
	serverURL := "http://10.77.8.1:8080"
	mac := macOf(t, p.Client, p.ClientIf)
	startServeIn(t, p.Server, serverURL+"/healthz", "--profiles", exampleDir(), "--data-dir", dataDir,
		"--http", "10.77.8.1:8080", "--tftp=false", "--dhcp", "full", "--interface", p.ServerIf,
		"--dhcp-pool-start", "10.77.8.100", "--dhcp-pool-end", "10.77.8.150", "--dhcp-router", "10.77.8.1", "--dhcp-dns", "10.77.8.1",
		"--dhcp-reservation", strings.ToUpper(strings.ReplaceAll(mac, ":", "-"))+"=10.77.8.42",
		"--etcd-listen-client", "http://127.0.0.1:2379", "--etcd-listen-peer", "http://127.0.0.1:2380")
	inServer := func(name string, args ...string) (string, error) {
		out, err := netnstest.Command(p.Server, name, args...).CombinedOutput()
		return string(out), err
	}

	// The machine: iPXE asking for an address (iPXE's raw user class).
	env := netnstest.Udhcpc(t, p.Client, p.ClientIf, "-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x4d:69505845", "-x", "0x5d:0000")
	// The reservation (given with the MAC in another form) wins.
	if env["boot_file"] != serverURL+"/boot.ipxe" || env["ip"] != "10.77.8.42" || env["router"] != "10.77.8.1" {
		t.Fatalf("lease for iPXE: %v", env)
	}

	// The machine follows its boot file over the veth, as iPXE would.
	inClient := func(args ...string) string {
		out, err := netnstest.Command(p.Client, "curl", append([]string{"-sSf", "--max-time", "5"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl in the client namespace %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if s := inClient(env["boot_file"]); !strings.Contains(s, "#!ipxe") {
		t.Fatalf("boot file: %s", s)
	}
	if s := inClient(serverURL + "/ipxe?mac=" + mac + "&arch=x86_64&firmware=bios"); !strings.Contains(s, "kernel ") {
		t.Fatalf("ipxe script: %s", s)
	}
	inClient("-o", "/dev/null", serverURL+"/ignition?mac="+mac)

	// The lease, from the CLI, in the contract's JSON shape.
	cli := []string{"--server", serverURL, "--data-dir", dataDir}
	leasesOut, err := inServer(bootfleet(t), append([]string{"leases", "-o", "json"}, cli...)...)
	if err != nil {
		t.Fatalf("leases: %v\n%s", err, leasesOut)
	}
	var leases []map[string]any
	if err := json.Unmarshal([]byte(leasesOut), &leases); err != nil || len(leases) != 1 {
		t.Fatalf("leases -o json: %v\n%s", err, leasesOut)
	}
	for _, k := range []string{"mac", "ip", "state", "expires", "server"} {
		if _, ok := leases[0][k]; !ok {
			t.Errorf("lease lacks %q: %v", k, leases[0])
		}
	}
	if leases[0]["mac"] != mac || leases[0]["ip"] != env["ip"] || leases[0]["state"] != "bound" {
		t.Errorf("lease %v, want %s %s bound", leases[0], mac, env["ip"])
	}
	if _, err := time.Parse(time.RFC3339, leases[0]["expires"].(string)); err != nil {
		t.Errorf("expires is not RFC 3339: %v", leases[0]["expires"])
	}

	// The whole path on the node's timeline.
	var node struct {
		State    string
		IP       string
		Timeline []struct{ Event string }
	}
	waitFor(t, "the full timeline", func() bool {
		out, err := inServer(bootfleet(t), append([]string{"nodes", "show", mac, "-o", "json"}, cli...)...)
		return err == nil && json.Unmarshal([]byte(out), &node) == nil && node.State == "provisioned"
	})
	var events []string
	for _, e := range node.Timeline {
		events = append(events, e.Event)
	}
	want := "dhcp.discover dhcp.offer dhcp.request dhcp.ack ipxe ignition"
	if strings.Join(events, " ") != want || node.IP != env["ip"] {
		t.Errorf("timeline %v (ip %s), want %s (ip %s)", events, node.IP, want, env["ip"])
	}

	// A UEFI HTTP boot client gets an http URL and vendor class HTTPClient,
	// and that URL gives the embedded iPXE EFI binary.
	httpEnv := netnstest.Udhcpc(t, p.Client, p.ClientIf, "-V", "HTTPClient:Arch:00016:UNDI:003001", "-x", "0x5d:0010")
	if httpEnv["boot_file"] != serverURL+"/ipxe/ipxe.efi" {
		t.Fatalf("HTTPClient boot file %q", httpEnv["boot_file"])
	}
	efi := inClient(httpEnv["boot_file"])
	rs, size, _, err := ipxe.Embedded().Open("ipxe.efi")
	if err != nil {
		t.Fatal(err)
	}
	wantEFI, _ := io.ReadAll(rs)
	if int64(len(efi)) != size || efi != string(wantEFI) {
		t.Errorf("HTTP boot download: %d bytes, want the embedded %d", len(efi), size)
	}
}

func macOf(t *testing.T, ns, ifname string) string {
	t.Helper()
	out, err := netnstest.Command(ns, "cat", "/sys/class/net/"+ifname+"/address").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}
