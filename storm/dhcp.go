package storm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"golang.org/x/sys/unix"
)

// dhcpClient plays the DHCP side of many machines through one socket on
// UDP port 68: every reply (the server broadcasts them) is handed to the
// exchange waiting for its transaction ID.
type dhcpClient struct {
	conn    net.PacketConn
	server  *net.UDPAddr
	timeout time.Duration
	tries   int

	mu      sync.Mutex
	waiting map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4
}

// newDHCPClient opens UDP :68 bound to ifname, with broadcast allowed and a
// receive buffer big enough for a storm's burst of replies.
func newDHCPClient(ifname string, timeout time.Duration, tries int) (*dhcpClient, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1)
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
			serr = unix.BindToDevice(int(fd), ifname)
		})
		return errors.Join(err, serr)
	}}
	conn, err := lc.ListenPacket(context.Background(), "udp4", ":68")
	if err != nil {
		return nil, fmt.Errorf("dhcp client socket on %s: %w", ifname, err)
	}
	c := &dhcpClient{conn: conn, server: &net.UDPAddr{IP: net.IPv4bcast, Port: 67}, timeout: timeout, tries: tries,
		waiting: map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4{}}
	go c.read()
	return c, nil
}

func (c *dhcpClient) Close() error { return c.conn.Close() }

func (c *dhcpClient) read() {
	buf := make([]byte, 2048)
	for {
		n, _, err := c.conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		m, err := dhcpv4.FromBytes(buf[:n])
		if err != nil || m.OpCode != dhcpv4.OpcodeBootReply {
			continue
		}
		c.mu.Lock()
		ch := c.waiting[m.TransactionID]
		c.mu.Unlock()
		if ch != nil {
			select {
			case ch <- m:
			default:
			}
		}
	}
}

// exchange sends m until a reply of a wanted type comes, retrying with a
// doubling timeout as PXE firmware does. It returns the reply and the
// number of retransmissions.
func (c *dhcpClient) exchange(ctx context.Context, m *dhcpv4.DHCPv4, want ...dhcpv4.MessageType) (*dhcpv4.DHCPv4, int, error) {
	ch := make(chan *dhcpv4.DHCPv4, 4)
	c.mu.Lock()
	c.waiting[m.TransactionID] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiting, m.TransactionID)
		c.mu.Unlock()
	}()
	wait := c.timeout
	raw := m.ToBytes()
	for try := 0; try < c.tries; try++ {
		if _, err := c.conn.WriteTo(raw, c.server); err != nil {
			return nil, try, fmt.Errorf("send %s: %w", m.MessageType(), err)
		}
		t := time.NewTimer(wait)
	recv:
		for {
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, try, ctx.Err()
			case r := <-ch:
				for _, w := range want {
					if r.MessageType() == w {
						t.Stop()
						return r, try, nil
					}
				}
			case <-t.C:
				break recv
			}
		}
		wait *= 2
	}
	return nil, c.tries - 1, fmt.Errorf("no %v for %s after %d tries", want, m.MessageType(), c.tries)
}

// client is how a simulated machine presents itself in DHCP.
type client struct {
	arch iana.Arch
	ipxe bool // user class iPXE: the second DHCP, after the iPXE binary loaded
}

func (cl client) modifiers(mac net.HardwareAddr) []dhcpv4.Modifier {
	uuid := make([]byte, 17) // option 97: type 0 + 16 bytes
	copy(uuid[11:], mac)
	mods := []dhcpv4.Modifier{
		dhcpv4.WithBroadcast(true),
		dhcpv4.WithOption(dhcpv4.OptClientArch(cl.arch)),
		dhcpv4.WithGeneric(dhcpv4.OptionClientNetworkInterfaceIdentifier, []byte{1, 2, 1}),
		dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, uuid),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier(fmt.Sprintf("PXEClient:Arch:%05d:UNDI:002001", uint16(cl.arch)))),
	}
	if cl.ipxe {
		mods = append(mods, dhcpv4.WithUserClass("iPXE", false))
	}
	return mods
}

// lease is what one DORA gave a machine.
type lease struct {
	IP       net.IP
	BootFile string
	Retries  int
}

// dora runs DISCOVER, OFFER, REQUEST, ACK for mac.
func (c *dhcpClient) dora(ctx context.Context, mac net.HardwareAddr, cl client) (lease, error) {
	disc, err := dhcpv4.NewDiscovery(mac, cl.modifiers(mac)...)
	if err != nil {
		return lease{}, err
	}
	offer, r1, err := c.exchange(ctx, disc, dhcpv4.MessageTypeOffer)
	if err != nil {
		return lease{Retries: r1}, err
	}
	req, err := dhcpv4.NewRequestFromOffer(offer, cl.modifiers(mac)...)
	if err != nil {
		return lease{Retries: r1}, err
	}
	ack, r2, err := c.exchange(ctx, req, dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak)
	if err != nil {
		return lease{Retries: r1 + r2}, err
	}
	if ack.MessageType() == dhcpv4.MessageTypeNak {
		return lease{Retries: r1 + r2}, fmt.Errorf("NAK for %v: %s", offer.YourIPAddr, ack.Message())
	}
	boot := ack.BootFileNameOption()
	if boot == "" {
		boot = ack.BootFileName
	}
	return lease{IP: ack.YourIPAddr, BootFile: boot, Retries: r1 + r2}, nil
}
