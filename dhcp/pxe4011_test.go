package dhcp

import (
	"context"
	"net"
	"os/exec"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// TestPXEBootServerPort: a UEFI PXE client that has an address sends its
// boot-file REQUEST to port 4011 over the veth; the answer comes back to its
// own address and port with the boot file and no yiaddr.
func TestPXEBootServerPort(t *testing.T) {
	p := newNetPair(t)
	cfg := testConfig()
	cfg.Mode = ModeProxy
	s, _ := p.startServer(t, cfg, t.TempDir()+"/l")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var l *PXEListener
	if err := inNetns(p.server, func() (err error) { l, err = s.ListenPXE(""); return err }); err != nil {
		t.Fatal(err)
	}
	go func() { done <- l.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServePXE: %v", err)
		}
	})
	if out, err := exec.Command("ip", "-n", p.client, "addr", "add", "10.77.9.150/24", "dev", p.cliIf).CombinedOutput(); err != nil {
		t.Fatalf("client address: %v\n%s", err, out)
	}
	req, err := dhcpv4.New(
		dhcpv4.WithHwAddr(mustMAC("52:54:00:40:11:01")),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(net.IPv4(10, 77, 9, 150)),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_BC)),
	)
	if err != nil {
		t.Fatal(err)
	}
	var reply *dhcpv4.DHCPv4
	err = inNetns(p.client, func() error {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 77, 9, 150)})
		if err != nil {
			return err
		}
		defer conn.Close()
		buf := make([]byte, 1500)
		// The listener starts in its own goroutine: retry until it answers.
		for try := 0; try < 20; try++ {
			if _, err := conn.WriteTo(req.ToBytes(), &net.UDPAddr{IP: net.IPv4(10, 77, 9, 1), Port: PXEPort}); err != nil {
				return err
			}
			conn.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				continue
			}
			reply, err = dhcpv4.FromBytes(buf[:n])
			return err
		}
		return context.DeadlineExceeded
	})
	if err != nil {
		t.Fatalf("no answer from port 4011: %v", err)
	}
	if reply.MessageType() != dhcpv4.MessageTypeAck || !reply.YourIPAddr.IsUnspecified() || reply.BootFileName != "ipxe.efi" || reply.ClassIdentifier() != "PXEClient" {
		t.Fatalf("4011 answer: %v", reply)
	}
	if r := s.HandlePXE(make([]byte, 10)); r != nil {
		t.Error("answered a truncated packet")
	}
}

// FuzzHandlePXE: any bytes on the PXE port never panic.
func FuzzHandlePXE(f *testing.F) {
	m, _ := dhcpv4.New(dhcpv4.WithHwAddr(mustMAC("52:54:00:40:11:01")), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007")), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_BC)))
	f.Add(m.ToBytes())
	f.Add(make([]byte, 240))
	cfg := testConfig()
	cfg.Mode = ModeProxy
	s, err := New(cfg, Options{})
	if err != nil {
		f.Fatal(err)
	}
	s.limit = newRateLimiter(1e12, 1e12)
	f.Fuzz(func(t *testing.T, b []byte) { s.HandlePXE(b) })
}
