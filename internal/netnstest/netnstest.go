// Package netnstest makes network namespaces for tests: a server and a
// client namespace joined by a veth pair, removed when the test ends. All
// test traffic stays inside them.
package netnstest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/sys/unix"
)

// Pair is a server and a client namespace joined by a veth pair. The server
// end has ServerCIDR; the client end has no address.
type Pair struct {
	Server, Client string // namespace names
	ServerIf       string // veth end in Server
	ClientIf       string // veth end in Client
	ServerCIDR     string // e.g. 10.77.9.1/24
}

// New creates the pair with the server end at serverCIDR. It skips the test
// when not root (CI runs as root) and fails when ip is missing.
func New(t testing.TB, serverCIDR string) *Pair {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces (CI runs as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("ip is not installed: `make test` installs iproute2")
	}
	b := make([]byte, 3)
	rand.Read(b)
	id := hex.EncodeToString(b)
	p := &Pair{Server: "bf-s-" + id, Client: "bf-c-" + id, ServerIf: "bfs" + id, ClientIf: "bfc" + id, ServerCIDR: serverCIDR}
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", p.Server).Run()
		exec.Command("ip", "netns", "del", p.Client).Run()
	})
	for _, args := range [][]string{
		{"netns", "add", p.Server},
		{"netns", "add", p.Client},
		{"link", "add", p.ServerIf, "netns", p.Server, "type", "veth", "peer", "name", p.ClientIf, "netns", p.Client},
		{"-n", p.Server, "addr", "add", serverCIDR, "dev", p.ServerIf},
		{"-n", p.Server, "link", "set", p.ServerIf, "up"},
		{"-n", p.Server, "link", "set", "lo", "up"},
		{"-n", p.Client, "link", "set", p.ClientIf, "up"},
		{"-n", p.Client, "link", "set", "lo", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return p
}

// In runs f with the calling thread in the named namespace; sockets made in
// f stay in that namespace.
func In(name string, f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return err
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + name)
	if err != nil {
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return err
	}
	defer unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET)
	return f()
}

// Command returns a command run inside namespace ns.
func Command(ns string, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// LAN is a bridge in its own namespace with hosts attached, each host a
// namespace with one veth end (named "eth0") on the bridge.
type LAN struct {
	Bridge string // namespace holding the bridge br0
	Hosts  map[string]string
}

// NewLAN creates a bridged segment and one namespace per host, giving each
// the address in hosts (empty for none). Everything is removed at cleanup.
func NewLAN(t testing.TB, hosts map[string]string) *LAN {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces (CI runs as root)")
	}
	b := make([]byte, 3)
	rand.Read(b)
	id := hex.EncodeToString(b)
	l := &LAN{Bridge: "bf-br-" + id, Hosts: map[string]string{}}
	var names []string
	t.Cleanup(func() {
		for _, n := range names {
			exec.Command("ip", "netns", "del", n).Run()
		}
	})
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", l.Bridge)
	names = append(names, l.Bridge)
	run("-n", l.Bridge, "link", "add", "br0", "type", "bridge")
	run("-n", l.Bridge, "link", "set", "br0", "up")
	i := 0
	for host, cidr := range hosts {
		ns := "bf-" + host + "-" + id
		names = append(names, ns)
		l.Hosts[host] = ns
		run("netns", "add", ns)
		port := "p" + id + string(rune('a'+i))
		i++
		run("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", l.Bridge)
		run("-n", l.Bridge, "link", "set", port, "master", "br0", "up")
		run("-n", ns, "link", "set", "lo", "up")
		if cidr != "" {
			run("-n", ns, "addr", "add", cidr, "dev", "eth0")
		}
		run("-n", ns, "link", "set", "eth0", "up")
	}
	return l
}

// Udhcpc runs busybox's DHCP client once on ifname in namespace ns and
// returns the variables its script saw on "bound" (ip, router, dns,
// boot_file, siaddr, ...). The script configures the address, so a RELEASE
// can be sent from it, and removes it on deconfig.
func Udhcpc(t testing.TB, ns, ifname string, extra ...string) map[string]string {
	t.Helper()
	if _, err := exec.LookPath("busybox"); err != nil {
		t.Fatal("busybox is not installed: `make test` installs it")
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "script")
	out := filepath.Join(dir, "env")
	os.WriteFile(script, []byte(`#!/bin/sh
case "$1" in
bound) env > `+out+`; ip addr add "$ip/$mask" dev "$interface" ;;
deconfig) ip addr flush dev "$interface" ;;
esac
exit 0
`), 0o755)
	args := append([]string{"netns", "exec", ns, "busybox", "udhcpc", "-i", ifname, "-f", "-q", "-n", "-t", "5", "-T", "1", "-A", "1", "-s", script}, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if b, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("udhcpc %v: %v\n%s", extra, err, b)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatalf("udhcpc got no lease: %v", err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = v
		}
	}
	return env
}

// DHCPClientSocket opens a DHCP client's socket (UDP :68, broadcast
// allowed, bound to ifname). Call it inside In, so the socket belongs to
// the client's namespace.
func DHCPClientSocket(ifname string) (net.PacketConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) {
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1)
			unix.BindToDevice(int(fd), ifname)
		})
	}}
	return lc.ListenPacket(context.Background(), "udp4", ":68")
}

// Bound is what a client got: its address and the server that gave it.
type Bound struct {
	IP, Server string
}

// DORA runs a DHCP exchange (DISCOVER, OFFER, REQUEST, ACK) from the
// namespace's interface for each MAC in turn, as perfdhcp does with
// made-up MACs, taking the first offer, and returns what each got. It
// stops at the first client that gets no ACK within a few retries.
func DORA(ns, ifname string, macs []net.HardwareAddr) (map[string]Bound, error) {
	out := map[string]Bound{}
	err := In(ns, func() error {
		pc, err := DHCPClientSocket(ifname)
		if err != nil {
			return err
		}
		defer pc.Close()
		buf := make([]byte, 1500)
		exchange := func(m *dhcpv4.DHCPv4, want dhcpv4.MessageType) *dhcpv4.DHCPv4 {
			for try := 0; try < 4; try++ {
				pc.WriteTo(m.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: 67})
				pc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
				for {
					k, _, err := pc.ReadFrom(buf)
					if err != nil {
						break
					}
					r, err := dhcpv4.FromBytes(buf[:k])
					if err == nil && r.TransactionID == m.TransactionID && r.MessageType() == want {
						return r
					}
				}
			}
			return nil
		}
		for _, mac := range macs {
			disc, err := dhcpv4.NewDiscovery(mac, dhcpv4.WithBroadcast(true))
			if err != nil {
				return err
			}
			offer := exchange(disc, dhcpv4.MessageTypeOffer)
			if offer == nil {
				return fmt.Errorf("client %v: no offer", mac)
			}
			req, err := dhcpv4.NewRequestFromOffer(offer, dhcpv4.WithBroadcast(true))
			if err != nil {
				return err
			}
			ack := exchange(req, dhcpv4.MessageTypeAck)
			if ack == nil {
				return fmt.Errorf("client %v: no ACK for %v", mac, offer.YourIPAddr)
			}
			out[mac.String()] = Bound{IP: ack.YourIPAddr.String(), Server: ack.ServerIdentifier().String()}
		}
		return nil
	})
	return out, err
}
