package dhcp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/bootfleet/bootfleet/internal/etcdtest"
	"github.com/bootfleet/bootfleet/internal/netnstest"
	"github.com/bootfleet/bootfleet/registry"
)

// Two full servers on one segment and one etcd cluster share the pool in
// blocks: real udhcpc clients get addresses from both, never the same one,
// each from a block its server owns.
func TestTwoServersShareThePool(t *testing.T) {
	hosts := map[string]string{"s1": "10.77.7.1/24", "s2": "10.77.7.2/24"}
	const clients = 8
	for i := range clients {
		hosts[fmt.Sprintf("c%d", i)] = ""
	}
	lan := netnstest.NewLAN(t, hosts)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cli := etcdtest.Client(t)

	type srv struct {
		s      *Server
		blocks *registry.SharedPool
		stop   func()
	}
	servers := map[string]srv{}
	for _, name := range []string{"s1", "s2"} {
		ip := netip.MustParseAddr(map[string]string{"s1": "10.77.7.1", "s2": "10.77.7.2"}[name])
		cfg := Config{Mode: ModeFull, Interface: "eth0", ServerIP: ip, Subnet: netip.MustParsePrefix("10.77.7.0/24"),
			PoolStart: netip.MustParseAddr("10.77.7.10"), PoolEnd: netip.MustParseAddr("10.77.7.249"), LeaseTime: time.Hour,
			BlockSize: 8, Boot: boot}
		store, err := OpenFileStore(filepath.Join(t.TempDir(), "leases.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		blocks, err := registry.NewSharedPool(registry.SharedPoolConfig{Client: cli, Pool: "10.77.7.0/24", Server: name, StaleAfter: 2 * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		s, err := New(cfg, Options{Store: store, Shared: blocks, ServerName: name})
		if err != nil {
			t.Fatal(err)
		}
		if err := netnstest.In(lan.Hosts[name], s.Listen); err != nil {
			t.Fatal(err)
		}
		rctx, rcancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(rctx) }()
		var once sync.Once
		stop := func() { once.Do(func() { rcancel(); <-done }) }
		t.Cleanup(stop)
		servers[name] = srv{s, blocks, stop}
	}

	got := make([]string, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			env := netnstest.Udhcpc(t, lan.Hosts[fmt.Sprintf("c%d", i)], "eth0")
			got[i] = env["ip"] + " from " + env["serverid"]
		}()
	}
	wg.Wait()
	// And 200 simulated clients (distinct MACs) from one namespace, each
	// taking the first offer of the two.
	macs := make([]net.HardwareAddr, 200)
	for i := range macs {
		macs[i] = net.HardwareAddr{0x02, 0xbf, 0, 0, byte(i >> 8), byte(i)}
	}
	sim, err := netnstest.DORA(lan.Hosts["c0"], "eth0", macs)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range sim {
		got = append(got, b.IP+" from "+b.Server)
	}

	seen := map[string]bool{}
	for _, g := range got {
		var ip, sid string
		fmt.Sscanf(g, "%s from %s", &ip, &sid)
		if seen[ip] {
			t.Fatalf("address %s handed out twice: %v", ip, got)
		}
		seen[ip] = true
	}
	owners, err := servers["s1"].blocks.Owners(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Each lease comes from a block of the server that granted it, and
	// either server lists every lease (the cluster's lease table).
	for name, sv := range servers {
		deadline := time.Now().Add(5 * time.Second)
		for {
			bound := 0
			for _, l := range sv.s.Leases() {
				if l.State != StateBound {
					continue
				}
				bound++
				first := netip.AddrFrom4([4]byte{10, 77, 7, byte(10 + (int(l.IP.As4()[3])-10)/8*8)})
				if owners[first] != l.Server {
					t.Fatalf("%s lists a lease on %v granted by %s from block %v, which %q owns", name, l.IP, l.Server, first, owners[first])
				}
				if !seen[l.IP.String()] {
					t.Fatalf("%s lists a lease on %v that no client got", name, l.IP)
				}
			}
			if bound == len(got) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s lists %d bound leases, want all %d", name, bound, len(got))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	per := map[string]int{}
	for _, g := range got {
		per[g[strings.LastIndexByte(g, ' ')+1:]]++
	}
	t.Logf("%d clients bound, by server %v; blocks %v", len(got), per, owners)

	// The server of client 0 stops. Client 0 rebinding (broadcast REQUEST
	// with its address, no server identifier) is acknowledged by the
	// other server, with the same address.
	ip := netip.MustParseAddr(strings.Fields(got[0])[0])
	gone, other, otherIP := "s1", "s2", net.IPv4(10, 77, 7, 2)
	if strings.HasSuffix(got[0], "from 10.77.7.2") {
		gone, other, otherIP = "s2", "s1", net.IPv4(10, 77, 7, 1)
	}
	servers[gone].stop()
	ack := rebind(t, lan.Hosts["c0"], ip)
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck || !ack.YourIPAddr.Equal(ip.AsSlice()) || !ack.ServerIdentifier().Equal(otherIP) {
		t.Fatalf("rebinding %v after %s stopped: %v", ip, gone, ack)
	}
	var taken bool
	for _, l := range servers[other].s.Leases() {
		taken = taken || (l.IP == ip && l.Server == other && l.State == StateBound)
	}
	if !taken {
		t.Errorf("%s acknowledged %v but holds no lease for it", other, ip)
	}
}

// rebind sends a REBINDING request (RFC 2131 4.3.2: ciaddr set, broadcast,
// no server identifier) from the client's namespace and returns the reply.
func rebind(t *testing.T, ns string, ip netip.Addr) *dhcpv4.DHCPv4 {
	t.Helper()
	var reply *dhcpv4.DHCPv4
	err := netnstest.In(ns, func() error {
		pc, err := netnstest.DHCPClientSocket("eth0")
		if err != nil {
			return err
		}
		defer pc.Close()
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		req, err := dhcpv4.New(dhcpv4.WithHwAddr(ifi.HardwareAddr), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
			dhcpv4.WithClientIP(ip.AsSlice()), dhcpv4.WithBroadcast(true))
		if err != nil {
			return err
		}
		buf := make([]byte, 1500)
		for try := 0; try < 3 && reply == nil; try++ {
			pc.WriteTo(req.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: 67})
			pc.SetReadDeadline(time.Now().Add(time.Second))
			for {
				n, _, err := pc.ReadFrom(buf)
				if err != nil {
					break
				}
				if m, err := dhcpv4.FromBytes(buf[:n]); err == nil && m.TransactionID == req.TransactionID {
					reply = m
					break
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return reply
}
