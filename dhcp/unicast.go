package dhcp

import (
	"encoding/binary"
	"fmt"
	"net"
	"unsafe"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"golang.org/x/sys/unix"
)

// unicastToYiaddr says whether a reply may go straight to the address it
// offers, at the client's MAC (RFC 2131 4.1): not relayed, the client has
// no address yet (ciaddr zero), it did not ask for broadcast, and its
// hardware address is Ethernet's, so the server can teach the kernel the
// neighbour entry that the client cannot answer ARP for yet.
func unicastToYiaddr(req, reply *dhcpv4.DHCPv4) bool {
	return unspecified(req.GatewayIPAddr) && unspecified(req.ClientIPAddr) &&
		!req.IsBroadcast() &&
		req.HWType == iana.HWTypeEthernet && len(req.ClientHWAddr) == 6 &&
		reply.YourIPAddr.To4() != nil && !unspecified(reply.YourIPAddr)
}

// atfCom is ATF_COM (net/if_arp.h): the entry is complete.
const atfCom = 0x02

// unspecified says whether ip is absent or 0.0.0.0.
func unspecified(ip net.IP) bool { return ip == nil || ip.IsUnspecified() }

// arpreq is Linux's struct arpreq (net/if_arp.h): 68 bytes.
type arpreq struct {
	pa      [16]byte // struct sockaddr_in: protocol address
	ha      [16]byte // struct sockaddr: sa_family ARPHRD_ETHER, then the MAC
	flags   int32
	netmask [16]byte
	dev     [16]byte
}

// setNeighbour inserts (or replaces) the kernel's ARP entry ip → mac on the
// server's interface, as ISC dhcpd and Kea do before they unicast an OFFER
// or ACK to an address the client does not hold yet. The entry is an
// ordinary (not permanent) one: it ages out like any learnt entry.
func (s *Server) setNeighbour(ip net.IP, mac net.HardwareAddr) error {
	ip4 := ip.To4()
	if ip4 == nil || len(mac) != 6 {
		return fmt.Errorf("neighbour %v → %v: want IPv4 and a 6-byte MAC", ip, mac)
	}
	var r arpreq
	binary.NativeEndian.PutUint16(r.pa[0:2], unix.AF_INET)
	copy(r.pa[4:8], ip4)
	binary.NativeEndian.PutUint16(r.ha[0:2], unix.ARPHRD_ETHER)
	copy(r.ha[2:8], mac)
	r.flags = atfCom
	copy(r.dev[:15], s.cfg.Interface)
	raw, err := s.conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("neighbour %v → %v: %w", ip, mac, err)
	}
	var errno unix.Errno
	cerr := raw.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, unix.SIOCSARP, uintptr(unsafe.Pointer(&r)))
	})
	if cerr != nil {
		return fmt.Errorf("neighbour %v → %v: %w", ip, mac, cerr)
	}
	if errno != 0 {
		return fmt.Errorf("neighbour %v → %v on %s (SIOCSARP): %w", ip, mac, s.cfg.Interface, errno)
	}
	return nil
}

var _ = [1]struct{}{}[unsafe.Sizeof(arpreq{})-68] // the kernel's layout
