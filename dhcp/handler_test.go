package dhcp

import (
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

var boot = BootConfig{IPXEScript: "http://10.77.0.1:8080/boot.ipxe", HTTPBase: "http://10.77.0.1:8080/ipxe/"}

func testConfig() Config {
	return Config{
		Mode: ModeFull, Interface: "lo", ServerIP: netip.MustParseAddr("10.77.0.1"),
		Subnet:    netip.MustParsePrefix("10.77.0.0/24"),
		PoolStart: netip.MustParseAddr("10.77.0.100"), PoolEnd: netip.MustParseAddr("10.77.0.102"),
		Router: netip.MustParseAddr("10.77.0.1"), DNS: []netip.Addr{netip.MustParseAddr("10.77.0.1")},
		Domain: "lab", LeaseTime: time.Hour, Boot: boot,
		Reservations: map[string]netip.Addr{"52:54:00:00:00:99": netip.MustParseAddr("10.77.0.50")},
	}
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTestServer(t *testing.T, cfg Config, storePath string, clk *clock) (*Server, *FileStore) {
	t.Helper()
	if storePath == "" {
		storePath = filepath.Join(t.TempDir(), "leases.jsonl")
	}
	st, err := OpenFileStore(storePath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s, err := New(cfg, Options{Store: st, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	return s, st
}

func mustMAC(s string) net.HardwareAddr { m, _ := net.ParseMAC(s); return m }

func request(t *testing.T, mt dhcpv4.MessageType, mac string, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(mustMAC(mac)), dhcpv4.WithMessageType(mt)}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func send(s *Server, req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	return s.Handle(req.ToBytes(), &net.UDPAddr{IP: net.IPv4zero, Port: 68})
}

func dora(t *testing.T, s *Server, mac string, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	offer, _ := send(s, request(t, dhcpv4.MessageTypeDiscover, mac, mods...))
	if offer == nil || offer.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("%s: no offer: %v", mac, offer)
	}
	ack, _ := send(s, request(t, dhcpv4.MessageTypeRequest, mac, append(mods,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 77, 0, 1))))...))
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck || !ack.YourIPAddr.Equal(offer.YourIPAddr) {
		t.Fatalf("%s: no ack for %v: %v", mac, offer.YourIPAddr, ack)
	}
	return ack
}

func TestDORAAndLeaseLife(t *testing.T) {
	clk := &clock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	path := filepath.Join(t.TempDir(), "leases.jsonl")
	s, _ := newTestServer(t, testConfig(), path, clk)

	ack := dora(t, s, "52:54:00:00:00:01")
	if ack.YourIPAddr.String() != "10.77.0.100" || ack.Router()[0].String() != "10.77.0.1" || ack.DNS()[0].String() != "10.77.0.1" ||
		ack.IPAddressLeaseTime(0) != time.Hour || ack.DomainName() != "lab" || ack.SubnetMask().String() != "ffffff00" {
		t.Fatalf("ack options: %s", ack.Summary())
	}
	if ack.BootFileName != "" {
		t.Errorf("a plain client got a boot file %q", ack.BootFileName)
	}
	// A reservation wins, even outside the pool.
	if ack := dora(t, s, "52:54:00:00:00:99"); ack.YourIPAddr.String() != "10.77.0.50" {
		t.Errorf("reserved client got %v", ack.YourIPAddr)
	}
	// The returning client gets its address again, also after a restart.
	if ack := dora(t, s, "52:54:00:00:00:01"); ack.YourIPAddr.String() != "10.77.0.100" {
		t.Errorf("returning client got %v", ack.YourIPAddr)
	}
	s2, _ := newTestServer(t, testConfig(), path, clk)
	if ack := dora(t, s2, "52:54:00:00:00:01"); ack.YourIPAddr.String() != "10.77.0.100" {
		t.Errorf("after restart got %v", ack.YourIPAddr)
	}
	if got := len(s2.Leases()); got != 2 {
		t.Errorf("%d leases after restart, want 2", got)
	}

	// Another client asking for a held address is NAKed.
	nak, _ := send(s2, request(t, dhcpv4.MessageTypeRequest, "52:54:00:00:00:02", dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 77, 0, 100)))))
	if nak == nil || nak.MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("request for a taken address: %v", nak)
	}
	// A request for another network's address is NAKed (INIT-REBOOT after moving).
	nak, _ = send(s2, request(t, dhcpv4.MessageTypeRequest, "52:54:00:00:00:02", dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(192, 168, 9, 9)))))
	if nak == nil || nak.MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("request for a foreign address: %v", nak)
	}
	// A request naming another server is ignored.
	if r, _ := send(s2, request(t, dhcpv4.MessageTypeRequest, "52:54:00:00:00:02", dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 77, 0, 9))), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 77, 0, 101))))); r != nil {
		t.Errorf("answered a request for another server: %v", r)
	}

	// Decline quarantines: the next client does not get that address.
	ack = dora(t, s2, "52:54:00:00:00:02")
	declined := ack.YourIPAddr
	send(s2, request(t, dhcpv4.MessageTypeDecline, "52:54:00:00:00:02", dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(declined))))
	ack = dora(t, s2, "52:54:00:00:00:03")
	if ack.YourIPAddr.Equal(declined) {
		t.Errorf("declined address %v offered again at once", declined)
	}
	// Pool of 3: .100 (01), .101 declined, .102 (03). A fourth client finds it full.
	if offer, _ := send(s2, request(t, dhcpv4.MessageTypeDiscover, "52:54:00:00:00:04")); offer != nil {
		t.Errorf("offer from a full pool: %v", offer.YourIPAddr)
	}
	// Release frees; after expiry of the others, reuse works.
	send(s2, request(t, dhcpv4.MessageTypeRelease, "52:54:00:00:00:03", dhcpv4.WithClientIP(net.IPv4(10, 77, 0, 102))))
	if ack := dora(t, s2, "52:54:00:00:00:04"); ack.YourIPAddr.String() != "10.77.0.102" {
		t.Errorf("after release got %v, want the released 10.77.0.102", ack.YourIPAddr)
	}
	clk.t = clk.t.Add(2 * time.Hour)
	if ack := dora(t, s2, "52:54:00:00:00:05"); !ack.YourIPAddr.Equal(declined) && ack.YourIPAddr.String() != "10.77.0.100" {
		t.Errorf("after expiry got %v", ack.YourIPAddr)
	}
}

func TestBootFileChoice(t *testing.T) {
	uuid := append([]byte{0}, make([]byte, 16)...)
	uuid[16] = 7
	for _, tc := range []struct {
		name      string
		mods      []dhcpv4.Modifier
		file      string
		vendor    string
		option175 bool
	}{
		{"plain", nil, "", "", false},
		{"BIOS PXE", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC))}, "undionly.kpxe", "PXEClient", false},
		{"UEFI x64 (7)", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_BC))}, "ipxe.efi", "PXEClient", false},
		{"UEFI x64 (9)", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00009:UNDI:003016")), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64))}, "ipxe.efi", "PXEClient", false},
		{"UEFI arm64", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00011:UNDI:003000")), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_ARM64))}, "snp.efi", "PXEClient", false},
		{"UEFI HTTP boot", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("HTTPClient:Arch:00016:UNDI:003001")), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64_HTTP))}, "http://10.77.0.1:8080/ipxe/ipxe.efi", "HTTPClient", false},
		{"iPXE", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")), dhcpv4.WithUserClass("iPXE", false)}, "http://10.77.0.1:8080/boot.ipxe", "", true},
		{"embedded iPXE (Tinkerbell)", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")), dhcpv4.WithUserClass("Tinkerbell", false)}, "http://10.77.0.1:8080/boot.ipxe", "", true},
		{"UUID echoed", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient")), dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, uuid)}, "undionly.kpxe", "PXEClient", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newTestServer(t, testConfig(), "", &clock{time.Now()})
			ack := dora(t, s, "52:54:00:00:00:01", tc.mods...)
			if ack.BootFileName != tc.file || ack.BootFileNameOption() != tc.file {
				t.Errorf("boot file %q / option 67 %q, want %q", ack.BootFileName, ack.BootFileNameOption(), tc.file)
			}
			if tc.file != "" && ack.ClassIdentifier() != tc.vendor {
				t.Errorf("option 60 %q, want %q", ack.ClassIdentifier(), tc.vendor)
			}
			if got := ack.GetOneOption(dhcpv4.GenericOptionCode(175)) != nil; got != tc.option175 {
				t.Errorf("option 175 present=%v, want %v", got, tc.option175)
			}
			if tc.name == "UUID echoed" && string(ack.GetOneOption(dhcpv4.OptionClientMachineIdentifier)) != string(uuid) {
				t.Error("option 97 not echoed")
			}
		})
	}
}

func TestRelayAndProxy(t *testing.T) {
	s, _ := newTestServer(t, testConfig(), "", &clock{time.Now()})
	offer, dst := send(s, request(t, dhcpv4.MessageTypeDiscover, "52:54:00:00:00:01", dhcpv4.WithGatewayIP(net.IPv4(10, 77, 0, 254))))
	if offer == nil || !dst.IP.Equal(net.IPv4(10, 77, 0, 254)) || dst.Port != 67 {
		t.Fatalf("relayed discover answered to %v, want the relay at port 67", dst)
	}

	cfg := testConfig()
	cfg.Mode = ModeProxy
	p, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := send(p, request(t, dhcpv4.MessageTypeDiscover, "52:54:00:00:00:01")); r != nil {
		t.Errorf("proxy answered a plain client: %v", r)
	}
	r, _ := send(p, request(t, dhcpv4.MessageTypeDiscover, "52:54:00:00:00:01", dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007")), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_BC))))
	if r == nil || !r.YourIPAddr.IsUnspecified() || r.BootFileName != "ipxe.efi" {
		t.Fatalf("proxy offer: %v", r)
	}
}

func TestRateLimitAllowsRetransmits(t *testing.T) {
	s, _ := newTestServer(t, testConfig(), "", &clock{time.Now()})
	answered := 0
	for range 10 {
		if r, _ := send(s, request(t, dhcpv4.MessageTypeDiscover, "52:54:00:00:00:01")); r != nil {
			answered++
		}
	}
	if answered != 10 {
		t.Errorf("%d of 10 retransmits answered", answered)
	}
	for range 100 {
		send(s, request(t, dhcpv4.MessageTypeDiscover, "52:54:00:00:00:01"))
	}
	if r, _ := send(s, request(t, dhcpv4.MessageTypeDiscover, "52:54:00:00:00:01")); r != nil {
		t.Error("a flood from one MAC is not limited")
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := testConfig()
	cfg.PoolEnd = netip.MustParseAddr("10.78.0.1")
	cfg.Reservations["52:54:00:00:00:98"] = netip.MustParseAddr("10.77.0.50")
	cfg.Reservations["zz"] = netip.MustParseAddr("10.77.0.51")
	err := cfg.Validate()
	for _, want := range []string{"outside the interface's subnet", "both want 10.77.0.50", `reservation "zz"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v; want %q", err, want)
		}
	}
}

// FuzzHandle: any bytes through the handler never panic.
func FuzzHandle(f *testing.F) {
	m, _ := dhcpv4.NewDiscovery(mustMAC("52:54:00:00:00:01"), dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient")), dhcpv4.WithUserClass("iPXE", false))
	f.Add(m.ToBytes())
	f.Add(make([]byte, 300))
	f.Add([]byte{1, 1, 6, 0})
	st, err := OpenFileStore(filepath.Join(f.TempDir(), "l"))
	if err != nil {
		f.Fatal(err)
	}
	s, err := New(testConfig(), Options{Store: st})
	if err != nil {
		f.Fatal(err)
	}
	s.limit = newRateLimiter(1e12, 1e12)
	f.Fuzz(func(t *testing.T, b []byte) {
		s.Handle(b, &net.UDPAddr{IP: net.IPv4zero, Port: 68})
	})
}
