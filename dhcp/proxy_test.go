package dhcp

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/bootfleet/bootfleet/internal/netnstest"
)

// Proxy mode beside a real dnsmasq that is the network's DHCP server: a
// PXE client's DISCOVER gets an address from dnsmasq and its boot file from
// bootfleet, which never offers an address.
func TestProxyBesideDnsmasq(t *testing.T) {
	if _, err := exec.LookPath("dnsmasq"); err != nil {
		t.Fatal("dnsmasq is not installed: `make test` installs dnsmasq-base")
	}
	lan := netnstest.NewLAN(t, map[string]string{"dns": "10.77.6.2/24", "boot": "10.77.6.1/24", "pc": ""})

	dnsmasq := exec.Command("ip", "netns", "exec", lan.Hosts["dns"], "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
		"--interface=eth0", "--bind-interfaces", "--dhcp-range=10.77.6.100,10.77.6.150,255.255.255.0,1h", "--no-ping",
		"--dhcp-leasefile="+filepath.Join(t.TempDir(), "leases"), "--pid-file=")
	if err := dnsmasq.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dnsmasq.Process.Kill(); dnsmasq.Wait() })

	cfg := Config{Mode: ModeProxy, Interface: "eth0", ServerIP: netip.MustParseAddr("10.77.6.1"), Subnet: netip.MustParsePrefix("10.77.6.0/24"), Boot: boot}
	s, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := netnstest.In(lan.Hosts["boot"], s.Listen); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	time.Sleep(300 * time.Millisecond) // dnsmasq binding

	// The PXE client, as UEFI firmware sends it.
	var offers []*dhcpv4.DHCPv4
	err = netnstest.In(lan.Hosts["pc"], func() error {
		pc, err := netnstest.DHCPClientSocket("eth0")
		if err != nil {
			return err
		}
		defer pc.Close()
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		disc, err := dhcpv4.NewDiscovery(ifi.HardwareAddr,
			dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
			dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_BC)),
			dhcpv4.WithBroadcast(true))
		if err != nil {
			return err
		}
		deadline := time.Now().Add(3 * time.Second)
		buf := make([]byte, 1500)
		for time.Now().Before(deadline) && len(offers) < 2 {
			pc.WriteTo(disc.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: 67})
			pc.SetReadDeadline(time.Now().Add(time.Second))
			for {
				n, _, err := pc.ReadFrom(buf)
				if err != nil {
					break
				}
				m, err := dhcpv4.FromBytes(buf[:n])
				if err != nil || m.TransactionID != disc.TransactionID || m.MessageType() != dhcpv4.MessageTypeOffer {
					continue
				}
				dup := false
				for _, o := range offers {
					dup = dup || o.ServerIdentifier().Equal(m.ServerIdentifier())
				}
				if !dup {
					offers = append(offers, m)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var fromDnsmasq, fromUs *dhcpv4.DHCPv4
	for _, o := range offers {
		switch o.ServerIdentifier().String() {
		case "10.77.6.2":
			fromDnsmasq = o
		case "10.77.6.1":
			fromUs = o
		}
	}
	if fromDnsmasq == nil || fromUs == nil {
		t.Fatalf("want offers from dnsmasq and bootfleet, got %d: %v", len(offers), offers)
	}
	if ip := fromDnsmasq.YourIPAddr; ip.IsUnspecified() || fromDnsmasq.BootFileName != "" {
		t.Errorf("dnsmasq offer: yiaddr %v file %q", ip, fromDnsmasq.BootFileName)
	}
	if !fromUs.YourIPAddr.IsUnspecified() || fromUs.BootFileName != "ipxe.efi" || fromUs.ClassIdentifier() != "PXEClient" || !fromUs.ServerIPAddr.Equal(net.IPv4(10, 77, 6, 1)) {
		t.Errorf("bootfleet proxy offer: yiaddr %v file %q class %q siaddr %v", fromUs.YourIPAddr, fromUs.BootFileName, fromUs.ClassIdentifier(), fromUs.ServerIPAddr)
	}
}
