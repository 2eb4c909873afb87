package dhcp

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// BenchmarkDORA: one client's DISCOVER and REQUEST through the handler,
// with the lease fsynced to a real file (one client at a time, so no
// group commit: the worst case).
func BenchmarkDORA(b *testing.B) {
	cfg := testConfig()
	cfg.Subnet = netipMustPrefix("10.0.0.0/8")
	cfg.PoolStart, cfg.PoolEnd = netipMustAddr("10.1.0.0"), netipMustAddr("10.200.0.0")
	cfg.ServerIP = netipMustAddr("10.0.0.1")
	st, err := OpenFileStore(filepath.Join(b.TempDir(), "l"))
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(cfg, Options{Store: st})
	if err != nil {
		b.Fatal(err)
	}
	s.limit = newRateLimiter(1e12, 1e12)
	peer := &net.UDPAddr{IP: net.IPv4zero, Port: 68}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		mac, _ := net.ParseMAC(fmt.Sprintf("02:00:%02x:%02x:%02x:%02x", byte(i>>24), byte(i>>16), byte(i>>8), byte(i)))
		i++
		d, _ := dhcpv4.NewDiscovery(mac)
		offer, _ := s.Handle(d.ToBytes(), peer)
		r, _ := dhcpv4.NewRequestFromOffer(offer)
		if ack, _ := s.Handle(r.ToBytes(), peer); ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
			b.Fatal("no ack")
		}
	}
	_ = time.Second
}

func netipMustAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }
func netipMustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
