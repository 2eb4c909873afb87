package dhcp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"time"
)

// Lease states.
const (
	StateOffered  = "offered"  // held for a client between OFFER and REQUEST (not persisted)
	StateBound    = "bound"    // acknowledged
	StateReleased = "released" // given back; kept so a returning client gets it again
	StateDeclined = "declined" // a client found it in use: quarantined until Expires
)

// Lease is one address and who holds it. Its JSON is the contract of
// `bootfleet leases -o json`.
type Lease struct {
	MAC      string     `json:"mac"`
	IP       netip.Addr `json:"ip"`
	State    string     `json:"state"`
	Expires  time.Time  `json:"expires"`
	Server   string     `json:"server"`
	Hostname string     `json:"hostname,omitempty"`
}

// Timing of the allocator.
const (
	offerHold  = 60 * time.Second // an offer is kept this long for its REQUEST
	quarantine = 10 * time.Minute // a declined address is not offered again for this long
)

var (
	errPoolFull   = errors.New("no free address in the pool")
	errNotOurs    = errors.New("address not in this server's subnet")
	errTaken      = errors.New("address held by another client")
	errReservedTo = errors.New("address reserved for another client")
	// errOtherServer: the address is in a block another server owns.
	errOtherServer = errors.New("address in another server's block")
)

// pool allocates addresses. It is not safe for concurrent use; the server
// serialises calls.
type pool struct {
	start, end uint32
	subnet     netip.Prefix
	server     string
	leaseTime  time.Duration
	reserved   map[string]netip.Addr // MAC → address
	reservedBy map[netip.Addr]string
	byMAC      map[string]*Lease
	byIP       map[netip.Addr]*Lease
	cursor     uint32
	// With a shared pool: the block size and the blocks (by index from
	// start) this server owns; owned is nil when the pool is all ours.
	blockSize uint32
	owned     map[uint32]bool
	// ownedList is owned, sorted, for the allocation scan; blockCursor
	// and offset say where the scan goes on.
	ownedList   []uint32
	blockCursor int
	offset      uint32
}

func newPool(cfg Config, server string) *pool {
	p := &pool{
		start: u32(cfg.PoolStart), end: u32(cfg.PoolEnd), subnet: cfg.Subnet, server: server, leaseTime: cfg.LeaseTime,
		reserved: map[string]netip.Addr{}, reservedBy: map[netip.Addr]string{},
		byMAC: map[string]*Lease{}, byIP: map[netip.Addr]*Lease{},
	}
	for mac, ip := range cfg.Reservations {
		p.reserved[mac] = ip
		p.reservedBy[ip] = mac
	}
	p.cursor = p.start
	return p
}

func u32(a netip.Addr) uint32 { b := a.As4(); return binary.BigEndian.Uint32(b[:]) }
func addr(u uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], u)
	return netip.AddrFrom4(b)
}

// shareInBlocks makes the pool shared: until blocks are added, this server
// owns no address.
func (p *pool) shareInBlocks(size uint32) {
	p.blockSize, p.owned = size, map[uint32]bool{}
}

// owns says whether this server may hand out ip from its pool.
func (p *pool) owns(ip netip.Addr) bool {
	return p.owned == nil || (p.inPool(ip) && p.owned[(u32(ip)-p.start)/p.blockSize])
}

// blocks returns the first address of every block of the pool, and
// whether this server owns it.
func (p *pool) blocks() (firsts []netip.Addr, owned []bool) {
	for u := uint64(p.start); u <= uint64(p.end); u += uint64(p.blockSize) {
		firsts = append(firsts, addr(uint32(u)))
		owned = append(owned, p.owned[(uint32(u)-p.start)/p.blockSize])
	}
	return firsts, owned
}

// setOwned replaces the set of owned blocks.
func (p *pool) setOwned(firsts []netip.Addr) {
	p.owned = map[uint32]bool{}
	for _, f := range firsts {
		if p.inPool(f) {
			p.owned[(u32(f)-p.start)/p.blockSize] = true
		}
	}
	p.indexOwned()
}

// addOwned adds one block (by its first address).
func (p *pool) addOwned(first netip.Addr) {
	if p.inPool(first) {
		p.owned[(u32(first)-p.start)/p.blockSize] = true
		p.indexOwned()
	}
}

func (p *pool) indexOwned() {
	p.ownedList = p.ownedList[:0]
	for b := range p.owned {
		p.ownedList = append(p.ownedList, b)
	}
	slices.Sort(p.ownedList)
	if p.blockCursor >= len(p.ownedList) {
		p.blockCursor, p.offset = 0, 0
	}
}

// nextOwnedFree finds a never-used address in the owned blocks, going on
// from where the last search stopped, so an offer costs O(1) while the
// blocks have room.
func (p *pool) nextOwnedFree() (netip.Addr, bool) {
	total := len(p.ownedList) * int(p.blockSize)
	for i := 0; i < total; i++ {
		if p.blockCursor >= len(p.ownedList) {
			p.blockCursor, p.offset = 0, 0
		}
		u := uint64(p.start) + uint64(p.ownedList[p.blockCursor])*uint64(p.blockSize) + uint64(p.offset)
		p.offset++
		if p.offset >= p.blockSize {
			p.blockCursor, p.offset = p.blockCursor+1, 0
		}
		if u > uint64(p.end) {
			continue
		}
		ip := addr(uint32(u))
		if _, used := p.byIP[ip]; used {
			continue
		}
		if _, res := p.reservedBy[ip]; res {
			continue
		}
		return ip, true
	}
	return netip.Addr{}, false
}

// freeAhead is how many addresses of the owned blocks the allocation scan
// has not reached yet: cheap, and what claiming ahead needs (an offer that
// finds none asks for a block at once anyway).
func (p *pool) freeAhead() int {
	if p.blockCursor >= len(p.ownedList) {
		return 0
	}
	return (len(p.ownedList)-p.blockCursor)*int(p.blockSize) - int(p.offset)
}

func (p *pool) inPool(ip netip.Addr) bool {
	return ip.Is4() && u32(ip) >= p.start && u32(ip) <= p.end
}

// usable reports whether ip may go to mac now.
func (p *pool) usable(ip netip.Addr, mac string, now time.Time) error {
	if owner, ok := p.reservedBy[ip]; ok && owner != mac {
		return errReservedTo
	}
	if l, ok := p.byIP[ip]; ok && l.MAC != mac {
		switch l.State {
		case StateBound, StateOffered, StateDeclined:
			if now.Before(l.Expires) {
				return errTaken
			}
		}
	}
	return nil
}

// offer picks an address for mac: its reservation; its previous address;
// the address it asks for; a never-used one; then the longest-expired one.
func (p *pool) offer(mac string, requested netip.Addr, now time.Time) (netip.Addr, error) {
	if ip, ok := p.reserved[mac]; ok {
		return p.hold(mac, ip, now), nil
	}
	if l, ok := p.byMAC[mac]; ok && p.inPool(l.IP) && p.owns(l.IP) && p.usable(l.IP, mac, now) == nil {
		return p.hold(mac, l.IP, now), nil
	}
	if p.inPool(requested) && p.owns(requested) && p.usable(requested, mac, now) == nil {
		return p.hold(mac, requested, now), nil
	}
	if p.owned != nil {
		if ip, ok := p.nextOwnedFree(); ok {
			return p.hold(mac, ip, now), nil
		}
	} else {
		size := p.end - p.start + 1
		for i := uint32(0); i < size; i++ {
			u := p.cursor
			p.cursor++
			if p.cursor > p.end {
				p.cursor = p.start
			}
			ip := addr(u)
			if _, used := p.byIP[ip]; used {
				continue
			}
			if _, res := p.reservedBy[ip]; res {
				continue
			}
			return p.hold(mac, ip, now), nil
		}
	}
	// Reuse: the address whose lease ended longest ago.
	var best *Lease
	for _, l := range p.byIP {
		if l.State == StateBound || !now.After(l.Expires) && l.State != StateReleased {
			continue
		}
		if _, res := p.reservedBy[l.IP]; res || !p.owns(l.IP) {
			continue
		}
		if best == nil || l.Expires.Before(best.Expires) {
			best = l
		}
	}
	if best == nil {
		return netip.Addr{}, errPoolFull
	}
	return p.hold(mac, best.IP, now), nil
}

// hold records an offer, unless mac already has the address bound.
func (p *pool) hold(mac string, ip netip.Addr, now time.Time) netip.Addr {
	if l, ok := p.byIP[ip]; ok && l.MAC == mac && l.State == StateBound && now.Before(l.Expires) {
		return ip
	}
	p.set(&Lease{MAC: mac, IP: ip, State: StateOffered, Expires: now.Add(offerHold), Server: p.server})
	return ip
}

// set stores a lease, dropping what it replaces for the same MAC or address.
func (p *pool) set(l *Lease) {
	if old, ok := p.byMAC[l.MAC]; ok && old.IP != l.IP && p.byIP[old.IP] == old {
		delete(p.byIP, old.IP)
	}
	if old, ok := p.byIP[l.IP]; ok && old.MAC != l.MAC && p.byMAC[old.MAC] == old {
		delete(p.byMAC, old.MAC)
	}
	if l.MAC != "" {
		p.byMAC[l.MAC] = l
	}
	p.byIP[l.IP] = l
}

// bind acknowledges ip to mac and returns the lease to persist.
func (p *pool) bind(mac string, ip netip.Addr, hostname string, now time.Time) (Lease, error) {
	if !p.subnet.Contains(ip) {
		return Lease{}, fmt.Errorf("%v: %w", ip, errNotOurs)
	}
	if _, res := p.reserved[mac]; !res && !p.inPool(ip) {
		if owner, ok := p.reservedBy[ip]; !ok || owner != mac {
			return Lease{}, fmt.Errorf("%v is outside the pool: %w", ip, errNotOurs)
		}
	}
	if _, res := p.reserved[mac]; !res && p.inPool(ip) && !p.owns(ip) {
		// Another server's block: answer only a client rebinding to the
		// address the cluster's lease table says it holds (its server is
		// gone, or it would have answered the renewal).
		if l, ok := p.byIP[ip]; !ok || l.MAC != mac || l.State != StateBound || !now.Before(l.Expires) {
			return Lease{}, fmt.Errorf("%v: %w", ip, errOtherServer)
		}
	}
	if want, res := p.reserved[mac]; res && want != ip {
		return Lease{}, fmt.Errorf("%v: %s has the reservation %v: %w", ip, mac, want, errTaken)
	}
	if err := p.usable(ip, mac, now); err != nil {
		return Lease{}, fmt.Errorf("%v: %w", ip, err)
	}
	l := &Lease{MAC: mac, IP: ip, State: StateBound, Expires: now.Add(p.leaseTime), Server: p.server, Hostname: hostname}
	p.set(l)
	return *l, nil
}

// release gives an address back (kept for the client's return).
func (p *pool) release(mac string, ip netip.Addr, now time.Time) (Lease, bool) {
	l, ok := p.byMAC[mac]
	if !ok || l.IP != ip || l.State != StateBound {
		return Lease{}, false
	}
	l.State, l.Expires = StateReleased, now
	return *l, true
}

// decline quarantines an address a client found in use.
func (p *pool) decline(mac string, ip netip.Addr, now time.Time) (Lease, bool) {
	if l, ok := p.byIP[ip]; !ok || l.MAC != mac {
		return Lease{}, false
	}
	delete(p.byMAC, mac)
	l := &Lease{IP: ip, State: StateDeclined, Expires: now.Add(quarantine), Server: p.server}
	p.byIP[ip] = l
	return *l, true
}

// merge takes in a lease from the cluster's lease table when it is newer
// than what the pool knows of that address (or of that client).
func (p *pool) merge(l Lease) bool {
	if !l.IP.Is4() || l.State == StateOffered {
		return false
	}
	if cur, ok := p.byIP[l.IP]; ok && !l.Expires.After(cur.Expires) {
		return false
	}
	if l.MAC != "" {
		if cur, ok := p.byMAC[l.MAC]; ok && cur.IP != l.IP && cur.State == StateBound && cur.Expires.After(l.Expires) {
			return false // the client has a newer lease elsewhere
		}
	}
	c := l
	p.set(&c)
	return true
}

// restore replays a persisted lease.
func (p *pool) restore(l Lease) {
	if !l.IP.Is4() {
		return
	}
	c := l
	p.set(&c)
}

// leases lists persisted-kind leases (not offers), sorted by address.
func (p *pool) leases() []Lease {
	out := make([]Lease, 0, len(p.byIP))
	for _, l := range p.byIP {
		if l.State != StateOffered {
			out = append(out, *l)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].IP.Less(out[j].IP) })
	return out
}
