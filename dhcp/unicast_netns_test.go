package dhcp

import (
	"encoding/binary"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/sys/unix"

	"github.com/bootfleet/bootfleet/internal/netnstest"
)

// seen is one DHCP reply as it arrived on the client's wire.
type seen struct {
	dstMAC net.HardwareAddr
	dstIP  net.IP
	xid    dhcpv4.TransactionID
	typ    dhcpv4.MessageType
	yiaddr net.IP
}

// captureReplies records the DHCP replies (UDP to port 68) that reach
// ifname in namespace ns, through an AF_PACKET socket there, until the
// returned function is called; that function returns them.
func captureReplies(t *testing.T, ns, ifname string) func() []seen {
	t.Helper()
	var fd int
	err := netnstest.In(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		proto := int(htons(unix.ETH_P_IP))
		if fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, proto); err != nil {
			return err
		}
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100000}); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifi.Index})
	})
	if err != nil {
		t.Fatalf("capture on %s: %v", ifname, err)
	}
	var (
		mu   sync.Mutex
		got  []seen
		quit = make(chan struct{})
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil { // the read timeout: nothing queued, stop if asked
				select {
				case <-quit:
					return
				default:
					continue
				}
			}
			if n < 14+20+8+240 {
				continue
			}
			f := buf[:n]
			if binary.BigEndian.Uint16(f[12:14]) != unix.ETH_P_IP {
				continue
			}
			ipHdr := f[14:]
			ihl := int(ipHdr[0]&0x0f) * 4
			if ipHdr[9] != unix.IPPROTO_UDP || len(ipHdr) < ihl+8 {
				continue
			}
			udp := ipHdr[ihl:]
			if binary.BigEndian.Uint16(udp[2:4]) != 68 {
				continue
			}
			m, err := dhcpv4.FromBytes(udp[8:])
			if err != nil || m.OpCode != dhcpv4.OpcodeBootReply {
				continue
			}
			mu.Lock()
			got = append(got, seen{dstMAC: append(net.HardwareAddr(nil), f[0:6]...), dstIP: append(net.IP(nil), ipHdr[16:20]...),
				xid: m.TransactionID, typ: m.MessageType(), yiaddr: m.YourIPAddr})
			mu.Unlock()
		}
	}()
	var once sync.Once
	stop := func() []seen {
		once.Do(func() { close(quit); <-done; unix.Close(fd) })
		mu.Lock()
		defer mu.Unlock()
		return append([]seen(nil), got...)
	}
	t.Cleanup(func() { stop() })
	return stop
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// checkReplies wants at least one OFFER (unless ackOnly) and one ACK, all
// sent to dstIP at dstMAC.
func checkReplies(t *testing.T, what string, got []seen, dstIP net.IP, dstMAC net.HardwareAddr, ackOnly bool) {
	t.Helper()
	count := map[dhcpv4.MessageType]int{}
	for _, r := range got {
		count[r.typ]++
		if !r.dstIP.Equal(dstIP) || r.dstMAC.String() != dstMAC.String() {
			t.Errorf("%s: %s (yiaddr %v) sent to %v at %v, want %v at %v", what, r.typ, r.yiaddr, r.dstIP, r.dstMAC, dstIP, dstMAC)
		}
	}
	if count[dhcpv4.MessageTypeAck] == 0 || !ackOnly && count[dhcpv4.MessageTypeOffer] == 0 {
		t.Errorf("%s: replies seen %v, want an OFFER and an ACK", what, count)
	}
}

// Replies go where RFC 2131 4.1 says, as seen on the client's wire: to the
// offered address at the client's MAC when the client can take unicast,
// broadcast when it asks for it, to ciaddr on a renewal; real clients get
// their leases either way.
func TestUnicastRepliesOnTheWire(t *testing.T) {
	p := newNetPair(t)
	p.startServer(t, testConfig(), filepath.Join(t.TempDir(), "leases"))
	var mac net.HardwareAddr
	netnstest.In(p.client, func() error {
		ifi, err := net.InterfaceByName(p.cliIf)
		if err == nil {
			mac = ifi.HardwareAddr
		}
		return err
	})
	bcastMAC := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

	// busybox udhcpc without -B: broadcast flag clear.
	stop := captureReplies(t, p.client, p.cliIf)
	env := p.udhcpc(t)
	ip := net.ParseIP(env["ip"]).To4()
	if ip == nil {
		t.Fatalf("udhcpc got no address: %v", env)
	}
	checkReplies(t, "udhcpc", stop(), ip, mac, false)

	// udhcpc -B asks for broadcast replies.
	stop = captureReplies(t, p.client, p.cliIf)
	if env := p.udhcpc(t, "-B"); env["ip"] != ip.String() {
		t.Errorf("udhcpc -B got %q, want %v", env["ip"], ip)
	}
	checkReplies(t, "udhcpc -B", stop(), net.IPv4bcast.To4(), bcastMAC, false)

	// A renewal (ciaddr set, sent to the server) is answered to ciaddr.
	stop = captureReplies(t, p.client, p.cliIf)
	err := netnstest.In(p.client, func() error {
		pc, err := netnstest.DHCPClientSocket(p.cliIf)
		if err != nil {
			return err
		}
		defer pc.Close()
		req, err := dhcpv4.New(dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(ip))
		if err != nil {
			return err
		}
		for range 3 {
			pc.WriteTo(req.ToBytes(), &net.UDPAddr{IP: net.IPv4(10, 77, 9, 1), Port: 67})
			time.Sleep(300 * time.Millisecond)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	checkReplies(t, "renewal", stop(), ip, mac, true)

	// ISC dhclient (no broadcast flag) gets the same address, by unicast.
	netnstest.Command(p.client, "ip", "addr", "flush", "dev", p.cliIf).Run()
	stop = captureReplies(t, p.client, p.cliIf)
	p.dhclient(t)
	got := stop()
	checkReplies(t, "dhclient", got, ip, mac, true)
	for _, r := range got {
		if !r.yiaddr.Equal(ip) {
			t.Errorf("dhclient offered %v, want %v", r.yiaddr, ip)
		}
	}
}
