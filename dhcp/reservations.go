package dhcp

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
)

// Reservation is one MAC's fixed address, from outside the server's
// Config (the profiles' groups). At says where it was written, e.g.
// "profiles/groups/db.yaml:4:12", and starts its error messages.
type Reservation struct {
	MAC string // lowercase, colons
	IP  netip.Addr
	At  string
}

// checkReservable reports why ip cannot be reserved on the server's
// network: outside the subnet, its network or broadcast address, the
// server's own address or the router's.
func (c *Config) checkReservable(ip netip.Addr) error {
	switch {
	case !ip.Is4():
		return fmt.Errorf("%v is not an IPv4 address", ip)
	case !c.Subnet.IsValid():
		return nil // reported by Validate
	case !c.Subnet.Contains(ip):
		return fmt.Errorf("%v is outside the DHCP subnet %v", ip, c.Subnet)
	case ip == c.Subnet.Masked().Addr() && c.Subnet.Bits() < 31:
		return fmt.Errorf("%v is the subnet's network address", ip)
	case ip == lastAddr(c.Subnet) && c.Subnet.Bits() < 31:
		return fmt.Errorf("%v is the subnet's broadcast address", ip)
	case ip == c.ServerIP:
		return fmt.Errorf("%v is the DHCP server's own address", ip)
	case ip == c.Router:
		return fmt.Errorf("%v is the router's address", ip)
	}
	return nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	u := u32(p.Masked().Addr()) | (1<<(32-p.Bits()) - 1)
	return addr(u)
}

// mergeReservations checks rs against the network and the config's own
// reservations and returns the union, MAC → address. Every problem is
// reported, each starting with where the reservation was written.
func (c *Config) mergeReservations(rs []Reservation) (map[string]netip.Addr, error) {
	out := make(map[string]netip.Addr, len(c.Reservations)+len(rs))
	byIP := make(map[netip.Addr]Reservation, len(c.Reservations)+len(rs))
	byMAC := make(map[string]Reservation, len(c.Reservations)+len(rs))
	for mac, ip := range c.Reservations {
		out[mac] = ip
		byIP[ip], byMAC[mac] = Reservation{MAC: mac, IP: ip, At: "the DHCP config"}, Reservation{MAC: mac, IP: ip, At: "the DHCP config"}
	}
	var errs []error
	for _, r := range rs {
		if err := c.checkReservable(r.IP); err != nil {
			errs = append(errs, fmt.Errorf("%s: reservation for %s: %w", r.At, r.MAC, err))
			continue
		}
		if o, ok := byIP[r.IP]; ok && o.MAC != r.MAC {
			errs = append(errs, fmt.Errorf("%s: reservation %v for %s: already reserved for %s (%s)", r.At, r.IP, r.MAC, o.MAC, o.At))
			continue
		}
		if o, ok := byMAC[r.MAC]; ok && o.IP != r.IP {
			errs = append(errs, fmt.Errorf("%s: reservation %v for %s: it already has the reservation %v (%s)", r.At, r.IP, r.MAC, o.IP, o.At))
			continue
		}
		out[r.MAC] = r.IP
		byIP[r.IP], byMAC[r.MAC] = r, r
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return out, errors.Join(errs...)
}

// SetReservations replaces the reservations that come from outside the
// Config (bootfleet.yaml with positions, the profiles' groups; again on
// every reload) and keeps the Config's own. On any problem it changes nothing and returns every problem. A
// reserved address is never offered to another client; another client
// that holds it is refused (NAK) at its next renewal, so it moves.
func (s *Server) SetReservations(rs []Reservation) error {
	if s.pool == nil {
		return nil // proxy mode hands out no addresses
	}
	all, err := s.cfg.mergeReservations(rs)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.pool.setReservations(all)
	s.mu.Unlock()
	return nil
}

// setReservations replaces the pool's reservations.
func (p *pool) setReservations(m map[string]netip.Addr) {
	p.reserved = make(map[string]netip.Addr, len(m))
	p.reservedBy = make(map[netip.Addr]string, len(m))
	for mac, ip := range m {
		p.reserved[mac], p.reservedBy[ip] = ip, mac
	}
}
