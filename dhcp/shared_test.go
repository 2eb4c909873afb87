package dhcp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/bootfleet/bootfleet/internal/netnstest"
	"github.com/bootfleet/bootfleet/registry"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func freeURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return "http://" + ln.Addr().String()
}

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
	e, err := registry.StartEmbedded(ctx, registry.EmbeddedConfig{Dir: t.TempDir(), ListenClient: freeURL(t), ListenPeer: freeURL(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	cli, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })

	type srv struct {
		s      *Server
		blocks *registry.Blocks
	}
	servers := map[string]srv{}
	for _, name := range []string{"s1", "s2"} {
		ip := netip.MustParseAddr(map[string]string{"s1": "10.77.7.1", "s2": "10.77.7.2"}[name])
		cfg := Config{Mode: ModeFull, Interface: "eth0", ServerIP: ip, Subnet: netip.MustParsePrefix("10.77.7.0/24"),
			PoolStart: netip.MustParseAddr("10.77.7.100"), PoolEnd: netip.MustParseAddr("10.77.7.163"), LeaseTime: time.Hour,
			BlockSize: 4, Boot: boot}
		store, err := OpenFileStore(filepath.Join(t.TempDir(), "leases.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		blocks, err := registry.NewBlocks(registry.BlocksConfig{Client: cli, Pool: "10.77.7.0/24", Server: name, StaleAfter: 2 * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		s, err := New(cfg, Options{Store: store, Blocks: blocks, ServerName: name})
		if err != nil {
			t.Fatal(err)
		}
		if err := netnstest.In(lan.Hosts[name], s.Listen); err != nil {
			t.Fatal(err)
		}
		rctx, rcancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(rctx) }()
		t.Cleanup(func() { rcancel(); <-done })
		servers[name] = srv{s, blocks}
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
	bound := 0
	for name, sv := range servers {
		for _, l := range sv.s.Leases() {
			if l.State != StateBound {
				continue
			}
			bound++
			first := netip.AddrFrom4([4]byte{10, 77, 7, byte(100 + (int(l.IP.As4()[3])-100)/4*4)})
			if owners[first] != name {
				t.Errorf("%s leased %v from block %v, which %q owns", name, l.IP, first, owners[first])
			}
			if !seen[l.IP.String()] {
				t.Errorf("%s has a lease on %v that no client got", name, l.IP)
			}
		}
	}
	if bound != clients {
		t.Errorf("%d bound leases across both servers for %d clients: %v", bound, clients, got)
	}
	t.Logf("clients: %v; blocks: %v", got, owners)
}
