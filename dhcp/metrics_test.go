package dhcp

import (
	"net"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Malformed, truncated and oversized packets are dropped and counted on the
// Registerer handed in (not the global one), under bootfleet_dhcp_ names.
func TestMalformedCountedOnGivenRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := testConfig()
	cfg.Mode = ModeProxy
	s, err := New(cfg, Options{Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	good, _ := dhcpv4.NewDiscovery(mustMAC("52:54:00:00:00:01"))
	reply := good.ToBytes()
	reply[0] = 2 // a BOOTREPLY is not for a server
	for _, b := range [][]byte{
		nil,
		{1, 1, 6, 0},         // truncated
		good.ToBytes()[:239], // header cut short
		make([]byte, 2000),   // oversized
		reply,
	} {
		if r, _ := s.Handle(b, &net.UDPAddr{IP: net.IPv4zero, Port: 68}); r != nil {
			t.Errorf("answered %x", b)
		}
	}
	if got := testutil.ToFloat64(s.m.dropped.WithLabelValues("malformed")); got != 5 {
		t.Errorf("bootfleet_dhcp_dropped_total{reason=malformed} = %v, want 5", got)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) == 0 {
		t.Fatal("nothing registered on the given registry")
	}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "bootfleet_dhcp_") {
			t.Errorf("metric %s does not start with bootfleet_dhcp_", mf.GetName())
		}
	}
}
