package dhcp

import (
	"context"
	"crypto/rand"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bootfleet/bootfleet/internal/netnstest"
)

// netPair adds the DHCP test's servers and clients to a namespace pair.
type netPair struct {
	*netnstest.Pair
	server, client string
	srvIf, cliIf   string
}

func newNetPair(t *testing.T) *netPair {
	t.Helper()
	if _, err := exec.LookPath("busybox"); err != nil {
		t.Fatal("busybox is not installed: `make test` installs it")
	}
	p := netnstest.New(t, "10.77.9.1/24")
	return &netPair{Pair: p, server: p.Server, client: p.Client, srvIf: p.ServerIf, cliIf: p.ClientIf}
}

var inNetns = netnstest.In

func (p *netPair) startServer(t *testing.T, cfg Config, storePath string) (*Server, func()) {
	t.Helper()
	cfg.Interface = p.srvIf
	cfg.ServerIP = netip.MustParseAddr("10.77.9.1")
	cfg.Subnet = netip.MustParsePrefix("10.77.9.0/24")
	cfg.PoolStart, cfg.PoolEnd = netip.MustParseAddr("10.77.9.100"), netip.MustParseAddr("10.77.9.199")
	cfg.Router = netip.MustParseAddr("10.77.9.1")
	cfg.DNS = []netip.Addr{netip.MustParseAddr("10.77.9.53")}
	cfg.Reservations = nil
	st, err := OpenFileStore(storePath)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if err := inNetns(p.server, s.Listen); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("server: %v", err)
			}
			st.Close()
		})
	}
	t.Cleanup(stop)
	return s, stop
}

// udhcpc runs busybox's DHCP client in the client namespace.
func (p *netPair) udhcpc(t *testing.T, extra ...string) map[string]string {
	t.Helper()
	return netnstest.Udhcpc(t, p.client, p.cliIf, extra...)
}

// dhclient runs ISC dhclient once in the client namespace with a script
// that configures the address it gets.
func (p *netPair) dhclient(t *testing.T, extra ...string) {
	t.Helper()
	if _, err := exec.LookPath("dhclient"); err != nil {
		t.Fatal("dhclient is not installed: `make test` installs isc-dhcp-client")
	}
	script := filepath.Join(os.TempDir(), "bf-dhclient-"+p.client)
	os.WriteFile(script, []byte(`#!/bin/sh
case "$reason" in
BOUND|RENEW|REBOOT) ip addr add "$new_ip_address/24" dev "$interface" 2>/dev/null ;;
RELEASE|EXPIRE|STOP) ip addr flush dev "$interface" ;;
esac
exit 0
`), 0o755)
	t.Cleanup(func() { os.Remove(script) })
	lease := filepath.Join(os.TempDir(), "bf-dhclient-"+p.client+".leases")
	pid := filepath.Join(os.TempDir(), "bf-dhclient-"+p.client+".pid")
	t.Cleanup(func() { os.Remove(lease); os.Remove(pid) })
	args := append([]string{"netns", "exec", p.client, "dhclient", "-1", "-4", "-sf", script, "-lf", lease, "-pf", pid}, extra...)
	args = append(args, p.cliIf)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if b, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("dhclient %v: %v\n%s", extra, err, b)
	}
}

func TestRealClientsInNamespaces(t *testing.T) {
	p := newNetPair(t)
	store := filepath.Join(t.TempDir(), "leases.jsonl")
	cfg := testConfig()
	s, stop := p.startServer(t, cfg, store)

	env := p.udhcpc(t)
	ip := env["ip"]
	if !strings.HasPrefix(ip, "10.77.9.") || env["router"] != "10.77.9.1" || env["dns"] != "10.77.9.53" || env["subnet"] != "255.255.255.0" || env["domain"] != "lab" {
		t.Fatalf("udhcpc lease: %v", env)
	}
	// A second run gets the same address.
	if again := p.udhcpc(t); again["ip"] != ip {
		t.Errorf("second run got %s, first %s", again["ip"], ip)
	}
	// PXE firmware (BIOS) gets undionly.kpxe from this server.
	pxe := p.udhcpc(t, "-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000")
	if pxe["boot_file"] != "undionly.kpxe" || pxe["siaddr"] != "10.77.9.1" {
		t.Errorf("PXE client: boot_file=%q siaddr=%q", pxe["boot_file"], pxe["siaddr"])
	}
	// iPXE gets the script URL.
	ipxe := p.udhcpc(t, "-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x4d:69505845")
	if ipxe["boot_file"] != boot.IPXEScript {
		t.Errorf("iPXE client: boot_file=%q, want %q", ipxe["boot_file"], boot.IPXEScript)
	}
	if len(s.Leases()) != 1 {
		t.Errorf("leases: %+v", s.Leases())
	}

	// After a restart on the same lease file the lease is still known.
	stop()
	s, _ = p.startServer(t, cfg, store)
	if l := s.Leases(); len(l) != 1 || l[0].IP.String() != ip || l[0].State != StateBound {
		t.Fatalf("after restart: %+v", l)
	}
	if again := p.udhcpc(t); again["ip"] != ip {
		t.Errorf("after restart got %s, want %s", again["ip"], ip)
	}
	// ISC dhclient gets the lease and releases it (-r).
	p.dhclient(t)
	p.dhclient(t, "-r")
	deadline := time.Now().Add(5 * time.Second)
	for l := s.Leases(); len(l) != 1 || l[0].State != StateReleased; l = s.Leases() {
		if time.Now().After(deadline) {
			t.Fatalf("after release: %+v", l)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A second server on the same interface and port refuses to start.
func TestSecondServerRefused(t *testing.T) {
	p := newNetPair(t)
	cfg := testConfig()
	p.startServer(t, cfg, filepath.Join(t.TempDir(), "a"))
	cfg.Interface, cfg.ServerIP, cfg.Subnet = p.srvIf, netip.MustParseAddr("10.77.9.1"), netip.MustParsePrefix("10.77.9.0/24")
	cfg.PoolStart, cfg.PoolEnd, cfg.Reservations = netip.MustParseAddr("10.77.9.100"), netip.MustParseAddr("10.77.9.199"), nil
	st, _ := OpenFileStore(filepath.Join(t.TempDir(), "b"))
	defer st.Close()
	s2, err := New(cfg, Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	err = inNetns(p.server, s2.Listen)
	if err == nil || !strings.Contains(err.Error(), "another DHCP server") {
		t.Fatalf("second server: %v, want a refusal naming another DHCP server", err)
	}
}

// Random and truncated packets are dropped; a real client is served after.
func TestFloodThenRealClient(t *testing.T) {
	p := newNetPair(t)
	p.startServer(t, testConfig(), filepath.Join(t.TempDir(), "l"))
	err := inNetns(p.client, func() error {
		conn, err := net.ListenPacket("udp4", ":0")
		if err != nil {
			return err
		}
		defer conn.Close()
		dst := &net.UDPAddr{IP: net.IPv4(10, 77, 9, 1), Port: 67}
		exec.Command("ip", "addr", "add", "10.77.9.250/24", "dev", p.cliIf).Run()
		buf := make([]byte, 600)
		for i := range 2000 {
			rand.Read(buf)
			n := i % len(buf)
			if i%3 == 0 && n > 240 {
				buf[0], buf[1], buf[2] = 1, 1, 6 // looks like a request, then garbage
			}
			conn.WriteTo(buf[:n], dst)
		}
		exec.Command("ip", "addr", "del", "10.77.9.250/24", "dev", p.cliIf).Run()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if env := p.udhcpc(t); !strings.HasPrefix(env["ip"], "10.77.9.") {
		t.Fatalf("after the flood: %v", env)
	}
}
