package dhcp

import (
	"net"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// TestPXEThroughRelayInNamespaces sends DISCOVERs as PXE firmware, UEFI HTTP
// boot and iPXE send them, relayed (giaddr set) from the client namespace
// over the veth, over a real socket; the replies come back to the relay's
// port 67 and are decoded.
func TestPXEThroughRelayInNamespaces(t *testing.T) {
	p := newNetPair(t)
	p.startServer(t, testConfig(), filepath.Join(t.TempDir(), "l"))
	if out, err := exec.Command("ip", "-n", p.client, "addr", "add", "10.77.9.254/24", "dev", p.cliIf).CombinedOutput(); err != nil {
		t.Fatalf("relay address: %v\n%s", err, out)
	}
	relay := net.IPv4(10, 77, 9, 254)
	uuid := append([]byte{0}, make([]byte, 16)...)
	uuid[1] = 0xab

	for i, tc := range []struct {
		name   string
		vendor string
		arch   iana.Arch
		user   string
		file   string
		opt60  string
		has175 bool
	}{
		{"BIOS arch 0", "PXEClient:Arch:00000:UNDI:002001", iana.INTEL_X86PC, "", "undionly.kpxe", "PXEClient", false},
		{"UEFI x64 arch 7", "PXEClient:Arch:00007:UNDI:003016", iana.EFI_BC, "", "ipxe.efi", "PXEClient", false},
		{"UEFI x64 arch 9", "PXEClient:Arch:00009:UNDI:003016", iana.EFI_X86_64, "", "ipxe.efi", "PXEClient", false},
		{"UEFI HTTP boot arch 16", "HTTPClient:Arch:00016:UNDI:003001", iana.EFI_X86_64_HTTP, "", boot.HTTPBase + "ipxe.efi", "HTTPClient", false},
		{"iPXE", "PXEClient:Arch:00007:UNDI:003016", iana.EFI_BC, "iPXE", boot.IPXEScript, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x77, 0x00, byte(i + 1)}
			mods := []dhcpv4.Modifier{
				dhcpv4.WithGatewayIP(relay),
				dhcpv4.WithOption(dhcpv4.OptClassIdentifier(tc.vendor)),
				dhcpv4.WithOption(dhcpv4.OptClientArch(tc.arch)),
				dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, uuid),
			}
			if tc.user != "" {
				mods = append(mods, dhcpv4.WithUserClass(tc.user, false))
			}
			req, err := dhcpv4.NewDiscovery(mac, mods...)
			if err != nil {
				t.Fatal(err)
			}
			var reply *dhcpv4.DHCPv4
			err = inNetns(p.client, func() error {
				conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: relay, Port: 67})
				if err != nil {
					return err
				}
				defer conn.Close()
				if _, err := conn.WriteTo(req.ToBytes(), &net.UDPAddr{IP: net.IPv4(10, 77, 9, 1), Port: 67}); err != nil {
					return err
				}
				buf := make([]byte, 1500)
				conn.SetReadDeadline(time.Now().Add(3 * time.Second))
				for {
					n, _, err := conn.ReadFrom(buf)
					if err != nil {
						return err
					}
					m, err := dhcpv4.FromBytes(buf[:n])
					if err == nil && m.TransactionID == req.TransactionID {
						reply = m
						return nil
					}
				}
			})
			if err != nil {
				t.Fatalf("no reply at the relay's port 67: %v", err)
			}
			if reply.MessageType() != dhcpv4.MessageTypeOffer || reply.YourIPAddr.To4()[2] != 9 {
				t.Fatalf("reply: %v", reply)
			}
			if !reply.GatewayIPAddr.Equal(relay) {
				t.Errorf("giaddr %v, want %v", reply.GatewayIPAddr, relay)
			}
			if reply.BootFileName != tc.file || reply.BootFileNameOption() != tc.file {
				t.Errorf("boot file %q / option 67 %q, want %q", reply.BootFileName, reply.BootFileNameOption(), tc.file)
			}
			if got := reply.ClassIdentifier(); got != tc.opt60 {
				t.Errorf("option 60 %q, want %q", got, tc.opt60)
			}
			o175 := reply.GetOneOption(dhcpv4.GenericOptionCode(175))
			if (o175 != nil) != tc.has175 {
				t.Errorf("option 175 %x, want present=%v", o175, tc.has175)
			}
			if tc.has175 && string(o175) != "\xb0\x01\x01" {
				t.Errorf("option 175 %x, want b00101 (176 = 1, no-pxedhcp)", o175)
			}
			if got := reply.GetOneOption(dhcpv4.OptionClientMachineIdentifier); string(got) != string(uuid) {
				t.Errorf("option 97 %x, want %x echoed", got, uuid)
			}
		})
	}
}
