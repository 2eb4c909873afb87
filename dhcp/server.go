package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/bootfleet/bootfleet/registry"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// Event is one DHCP exchange, for the registry's timeline.
type Event struct {
	Time        time.Time
	MAC         string
	Type        string // discover, offer, request, ack, nak, release, decline, inform
	IP          netip.Addr
	Arch        string // x86_64 | arm64
	Firmware    string // bios | uefi
	VendorClass string
	UserClass   string
	UUID        string
	BootFile    string
}

// Options are the Server's collaborators.
type Options struct {
	Store   LeaseStore // required in full mode
	Log     *slog.Logger
	Metrics prometheus.Registerer
	OnEvent func(Event) // must not block
	// ServerName names this server in leases; default the server IP.
	ServerName string
	// Shared, when set, shares the pool with the other servers of an etcd
	// cluster (full mode): this server offers only addresses of the blocks
	// it has claimed, publishes its leases to the cluster's lease table and
	// learns the others' (to list them and to take over a stopped
	// server's clients when they rebind).
	Shared *registry.SharedPool
	Now    func() time.Time
}

// Server answers DHCP on one interface.
type Server struct {
	cfg   Config
	opts  Options
	log   *slog.Logger
	m     *metrics
	limit *rateLimiter

	mu   sync.Mutex
	pool *pool
	// claim asks the block manager for another block at once (pool full).
	claim chan struct{}
	// noOffer limits the log of refused DISCOVERs to one a second.
	noOffer logLimit
	// noNeighbour limits the log of failed ARP entries to one a second.
	noNeighbour logLimit

	conn *net.UDPConn
}

type metrics struct {
	packets *prometheus.CounterVec // by message type
	replies *prometheus.CounterVec
	dropped *prometheus.CounterVec // by reason
	handle  prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		packets: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bootfleet_dhcp_packets_total", Help: "DHCP packets received, by message type."}, []string{"type"}),
		replies: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bootfleet_dhcp_replies_total", Help: "DHCP replies sent, by message type."}, []string{"type"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bootfleet_dhcp_dropped_total", Help: "DHCP packets dropped, by reason."}, []string{"reason"}),
		handle: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "bootfleet_dhcp_handle_duration_seconds", Help: "Time from receiving a DHCP packet to sending the reply (lease persisted).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .5}}),
	}
	for _, c := range []prometheus.Collector{m.packets, m.replies, m.dropped, m.handle} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("dhcp metrics: %w", err)
		}
	}
	return m, nil
}

// New checks the configuration and restores the stored leases.
func New(cfg Config, opts Options) (*Server, error) {
	if cfg.Listen == "" {
		cfg.Listen = ":67"
	}
	if cfg.ClientPort == 0 {
		cfg.ClientPort = 68
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 64
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("dhcp config: %w", err)
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Metrics == nil {
		opts.Metrics = prometheus.NewRegistry()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ServerName == "" {
		opts.ServerName = cfg.ServerIP.String()
	}
	m, err := newMetrics(opts.Metrics)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, opts: opts, log: opts.Log, m: m, limit: newRateLimiter(20, 5)}
	if cfg.Mode == ModeFull {
		if opts.Store == nil {
			return nil, errors.New("dhcp: full mode needs a lease store")
		}
		s.pool = newPool(cfg, opts.ServerName)
		if opts.Shared != nil {
			if cfg.BlockSize <= 0 {
				// About 32 blocks per pool, at least 8 addresses each: a
				// storm claims few blocks, and several servers still get
				// their share.
				size := int(u32(cfg.PoolEnd)-u32(cfg.PoolStart)+1) / 32
				cfg.BlockSize = 8
				for cfg.BlockSize < size && cfg.BlockSize < 4096 {
					cfg.BlockSize *= 2
				}
				s.cfg.BlockSize = cfg.BlockSize
			}
			s.pool.shareInBlocks(uint32(cfg.BlockSize))
			s.claim = make(chan struct{}, 1)
		}
		leases, err := opts.Store.Load()
		if err != nil {
			return nil, err
		}
		for _, l := range leases {
			s.pool.restore(l)
		}
	}
	return s, nil
}

// Subnet is the network the server answers for.
func (s *Server) Subnet() netip.Prefix { return s.cfg.Subnet }

// Leases returns the current leases (not offers), sorted by address.
func (s *Server) Leases() []Lease {
	if s.pool == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pool.leases()
}

// Listen binds the server's socket to its interface. Run calls it when the
// caller has not; a caller that must bind inside a network namespace calls
// it there first.
func (s *Server) Listen() error {
	if s.conn != nil {
		return nil
	}
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			// No SO_REUSEPORT: a second DHCP server on this port fails to bind
			// instead of silently sharing the packets.
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1); serr != nil {
				return
			}
			// A boot storm's burst of DISCOVERs must wait in the socket, not
			// be dropped by the kernel while the read loop is busy: 4 MiB
			// (past net.core.rmem_max as root; the default is ~200 KiB, a
			// hundred packets on a veth).
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
			}
			serr = unix.BindToDevice(int(fd), s.cfg.Interface)
		})
		return errors.Join(err, serr)
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", s.cfg.Listen)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("dhcp on %s: another DHCP server already listens on %s there (dnsmasq? another bootfleet?); stop it or use --dhcp proxy / off: %w", s.cfg.Interface, s.cfg.Listen, err)
		}
		return fmt.Errorf("dhcp on %s (%s): %w", s.cfg.Interface, s.cfg.Listen, err)
	}
	s.conn = pc.(*net.UDPConn)
	return nil
}

type packet struct {
	data []byte
	peer *net.UDPAddr
	at   time.Time
}

// Run serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	if s.opts.Shared != nil && s.pool != nil {
		if err := s.initShared(ctx); err != nil {
			return err
		}
	}
	s.log.Info("dhcp serving", "mode", s.cfg.Mode, "interface", s.cfg.Interface, "server", s.cfg.ServerIP, "pool", fmt.Sprintf("%v-%v", s.cfg.PoolStart, s.cfg.PoolEnd))
	work := make(chan packet, 1024)
	var wg sync.WaitGroup
	for range s.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range work {
				s.serve(p)
			}
		}()
	}
	stop := context.AfterFunc(ctx, func() { s.conn.Close() })
	defer stop()
	var err error
	buf := make([]byte, 1501) // one more than Handle takes, so oversized packets show
	for {
		n, peer, rerr := s.conn.ReadFromUDP(buf)
		if rerr != nil {
			if ctx.Err() == nil {
				err = fmt.Errorf("dhcp read: %w", rerr)
			}
			break
		}
		// A copy of the packet's size, not a cleared 1500-byte buffer each time.
		select {
		case work <- packet{data: append([]byte(nil), buf[:n]...), peer: peer, at: time.Now()}:
		default:
			s.m.dropped.WithLabelValues("overload").Inc()
		}
	}
	close(work)
	wg.Wait()
	return err
}

// serve handles one packet end to end.
func (s *Server) serve(p packet) {
	reply, dst := s.Handle(p.data, p.peer)
	if reply == nil {
		return
	}
	if dst.IP.Equal(reply.YourIPAddr) && unspecified(reply.ClientIPAddr) {
		// Unicast to an address the client cannot answer ARP for yet.
		if err := s.setNeighbour(dst.IP, reply.ClientHWAddr); err != nil {
			if s.noNeighbour.Allow() {
				s.log.Warn("dhcp: cannot set the client's ARP entry; broadcasting the reply", "error", err)
			}
			dst = &net.UDPAddr{IP: net.IPv4bcast, Port: s.cfg.ClientPort}
		}
	}
	if _, err := s.conn.WriteToUDP(reply.ToBytes(), dst); err != nil {
		s.log.Warn("dhcp send failed", "to", dst, "error", err)
		s.m.dropped.WithLabelValues("send_error").Inc()
		return
	}
	s.m.replies.WithLabelValues(reply.MessageType().String()).Inc()
	s.m.handle.Observe(time.Since(p.at).Seconds())
}

// Handle decides the reply to one raw packet and where it goes; nil means
// no reply. It never panics on input.
func (s *Server) Handle(data []byte, peer *net.UDPAddr) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	if len(data) < 240 || len(data) > 1500 {
		s.m.dropped.WithLabelValues("malformed").Inc()
		return nil, nil
	}
	req, err := dhcpv4.FromBytes(data)
	if err != nil || req.OpCode != dhcpv4.OpcodeBootRequest || len(req.ClientHWAddr) != 6 {
		s.m.dropped.WithLabelValues("malformed").Inc()
		return nil, nil
	}
	mt := req.MessageType()
	s.m.packets.WithLabelValues(mt.String()).Inc()
	mac := req.ClientHWAddr.String()
	if !s.limit.allow(mac, s.opts.Now()) {
		s.m.dropped.WithLabelValues("rate_limited").Inc()
		return nil, nil
	}
	client := ClientOf(req)
	var reply *dhcpv4.DHCPv4
	if s.cfg.Mode == ModeProxy {
		reply = s.proxy(req, client)
	} else {
		reply = s.full(req, client)
	}
	if reply == nil {
		return nil, nil
	}
	return reply, s.destination(req, reply)
}

// destination follows RFC 2131 4.1: to the relay, to the client's address,
// or broadcast.
func (s *Server) destination(req, reply *dhcpv4.DHCPv4) *net.UDPAddr {
	switch {
	case !req.GatewayIPAddr.IsUnspecified() && req.GatewayIPAddr != nil:
		return &net.UDPAddr{IP: req.GatewayIPAddr, Port: 67}
	case reply.MessageType() == dhcpv4.MessageTypeNak:
		return &net.UDPAddr{IP: net.IPv4bcast, Port: s.cfg.ClientPort}
	case !req.ClientIPAddr.IsUnspecified() && req.ClientIPAddr != nil:
		return &net.UDPAddr{IP: req.ClientIPAddr, Port: s.cfg.ClientPort}
	case unicastToYiaddr(req, reply):
		// serve sets the ARP entry yiaddr → chaddr before it sends.
		return &net.UDPAddr{IP: reply.YourIPAddr, Port: s.cfg.ClientPort}
	default:
		return &net.UDPAddr{IP: net.IPv4bcast, Port: s.cfg.ClientPort}
	}
}

func (s *Server) event(req *dhcpv4.DHCPv4, c Client, typ string, ip netip.Addr, boot string) {
	if s.opts.OnEvent == nil {
		return
	}
	e := Event{Time: s.opts.Now().UTC(), MAC: req.ClientHWAddr.String(), Type: typ, IP: ip, VendorClass: c.VendorClass, BootFile: boot}
	if c.IsNetboot() {
		e.Arch, e.Firmware = c.MachineArch(), c.Firmware()
	}
	if len(c.UserClass) > 0 {
		e.UserClass = c.UserClass[0]
	}
	if len(c.UUID) == 17 { // type 0 + 16 bytes
		u := c.UUID[1:]
		e.UUID = fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
	}
	s.opts.OnEvent(e)
}

// full answers as the network's authoritative DHCP server.
func (s *Server) full(req *dhcpv4.DHCPv4, c Client) *dhcpv4.DHCPv4 {
	mac := req.ClientHWAddr.String()
	now := s.opts.Now()
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		s.event(req, c, "discover", netip.Addr{}, "")
		requested, _ := netip.AddrFromSlice(req.RequestedIPAddress().To4())
		s.mu.Lock()
		ip, err := s.pool.offer(mac, requested, now)
		s.mu.Unlock()
		if err != nil {
			if s.noOffer.Allow() {
				s.log.Warn("dhcp: no offer (further ones this second are only counted in bootfleet_dhcp_dropped_total)", "mac", mac, "error", err)
			}
			s.m.dropped.WithLabelValues("pool_full").Inc()
			if s.claim != nil {
				select {
				case s.claim <- struct{}{}:
				default:
				}
			}
			return nil
		}
		reply := s.reply(req, c, dhcpv4.MessageTypeOffer, ip)
		s.event(req, c, "offer", ip, reply.BootFileName)
		return reply

	case dhcpv4.MessageTypeRequest:
		sid := req.ServerIdentifier()
		if sid != nil && !sid.Equal(s.cfg.ServerIP.AsSlice()) {
			// The client chose another server's offer.
			return nil
		}
		ip, _ := netip.AddrFromSlice(req.RequestedIPAddress().To4())
		if !ip.IsValid() {
			ip, _ = netip.AddrFromSlice(req.ClientIPAddr.To4())
		}
		s.event(req, c, "request", ip, "")
		s.mu.Lock()
		lease, err := s.pool.bind(mac, ip, req.HostName(), now)
		s.mu.Unlock()
		if errors.Is(err, errOtherServer) {
			// Another server of the cluster owns it: its answer, not ours.
			return nil
		}
		if err != nil {
			// Authoritative: an address this server cannot give (another
			// network's, another client's) is refused, so the client starts over.
			s.log.Info("dhcp: NAK", "mac", mac, "ip", ip, "reason", err)
			s.event(req, c, "nak", ip, err.Error())
			return s.nak(req, err.Error())
		}
		if err := s.opts.Store.Put(lease); err != nil {
			// Not durable: do not acknowledge; the client retries.
			s.log.Error("dhcp: lease not stored; no ACK", "mac", mac, "ip", ip, "error", err)
			s.m.dropped.WithLabelValues("store_error").Inc()
			return nil
		}
		s.publish(lease)
		reply := s.reply(req, c, dhcpv4.MessageTypeAck, ip)
		s.event(req, c, "ack", ip, reply.BootFileName)
		return reply

	case dhcpv4.MessageTypeRelease:
		ip, _ := netip.AddrFromSlice(req.ClientIPAddr.To4())
		s.mu.Lock()
		lease, ok := s.pool.release(mac, ip, now)
		s.mu.Unlock()
		if ok {
			if err := s.opts.Store.Put(lease); err != nil {
				s.log.Warn("dhcp: release not stored", "mac", mac, "error", err)
			}
			s.publish(lease)
		}
		s.event(req, c, "release", ip, "")
		return nil

	case dhcpv4.MessageTypeDecline:
		ip, _ := netip.AddrFromSlice(req.RequestedIPAddress().To4())
		s.mu.Lock()
		lease, ok := s.pool.decline(mac, ip, now)
		s.mu.Unlock()
		if ok {
			s.log.Warn("dhcp: address declined (in use on the network?); quarantined", "mac", mac, "ip", ip, "for", quarantine)
			if err := s.opts.Store.Put(lease); err != nil {
				s.log.Warn("dhcp: decline not stored", "mac", mac, "error", err)
			}
			s.publish(lease)
		}
		s.event(req, c, "decline", ip, "")
		return nil

	case dhcpv4.MessageTypeInform:
		ip, _ := netip.AddrFromSlice(req.ClientIPAddr.To4())
		s.event(req, c, "inform", ip, "")
		return s.reply(req, c, dhcpv4.MessageTypeAck, netip.Addr{}) // no address, no lease
	}
	s.m.dropped.WithLabelValues("unexpected_type").Inc()
	return nil
}

// proxy answers PXE clients with boot information only, never an address.
func (s *Server) proxy(req *dhcpv4.DHCPv4, c Client) *dhcpv4.DHCPv4 {
	if !c.IsNetboot() {
		s.m.dropped.WithLabelValues("not_pxe").Inc()
		return nil
	}
	var mt dhcpv4.MessageType
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		mt = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeInform:
		mt = dhcpv4.MessageTypeAck
	default:
		return nil
	}
	reply := s.reply(req, c, mt, netip.Addr{})
	s.event(req, c, "proxy-"+mt.String(), netip.Addr{}, reply.BootFileName)
	return reply
}

// reply builds an OFFER or ACK with the network options and, for netboot
// clients, the boot information.
func (s *Server) reply(req *dhcpv4.DHCPv4, c Client, mt dhcpv4.MessageType, ip netip.Addr) *dhcpv4.DHCPv4 {
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithServerIP(s.cfg.ServerIP.AsSlice()),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.cfg.ServerIP.AsSlice())),
	}
	if ip.IsValid() {
		mask := net.CIDRMask(s.cfg.Subnet.Bits(), 32)
		mods = append(mods,
			dhcpv4.WithYourIP(ip.AsSlice()),
			dhcpv4.WithNetmask(mask),
			dhcpv4.WithLeaseTime(uint32(s.cfg.LeaseTime/time.Second)),
			dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(s.cfg.LeaseTime/2)),
			dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(s.cfg.LeaseTime*7/8)),
		)
	}
	if s.cfg.Mode == ModeFull {
		if s.cfg.Router.IsValid() {
			mods = append(mods, dhcpv4.WithRouter(s.cfg.Router.AsSlice()))
		}
		if len(s.cfg.DNS) > 0 {
			var dns []net.IP
			for _, d := range s.cfg.DNS {
				dns = append(dns, d.AsSlice())
			}
			mods = append(mods, dhcpv4.WithDNS(dns...))
		}
		if s.cfg.Domain != "" {
			mods = append(mods, dhcpv4.WithOption(dhcpv4.OptDomainName(s.cfg.Domain)))
		}
	}
	if mt == dhcpv4.MessageTypeAck {
		mods = append(mods, dhcpv4.WithClientIP(req.ClientIPAddr)) // RFC 2131 table 3
	}
	reply, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil { // only for a request without a transaction: cannot happen after FromBytes
		return nil
	}
	if boot, ok := ChooseBoot(c, s.cfg.Boot); ok {
		reply.BootFileName = boot.File
		reply.UpdateOption(dhcpv4.OptBootFileName(boot.File))
		reply.UpdateOption(dhcpv4.OptTFTPServerName(s.cfg.ServerIP.String()))
		if boot.VendorClass != "" {
			reply.UpdateOption(dhcpv4.OptClassIdentifier(boot.VendorClass))
		}
		if boot.VendorClass == "PXEClient" {
			reply.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, pxeNoDiscovery))
		}
		if boot.IPXE {
			reply.UpdateOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(175), ipxeNoPXEDHCP))
		}
		if len(c.UUID) > 0 {
			reply.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, c.UUID))
		}
	}
	return reply
}

func (s *Server) nak(req *dhcpv4.DHCPv4, reason string) *dhcpv4.DHCPv4 {
	reply, err := dhcpv4.NewReplyFromRequest(req,
		dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.cfg.ServerIP.AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptMessage(reason)),
	)
	if err != nil {
		return nil
	}
	return reply
}

// rateLimiter is a token bucket per MAC: burst packets at once, refilled at
// rate per second; loose enough for firmware retransmits.
type rateLimiter struct {
	mu      sync.Mutex
	burst   float64
	rate    float64
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newRateLimiter(burst, rate float64) *rateLimiter {
	return &rateLimiter{burst: burst, rate: rate, buckets: map[string]*bucket{}}
}

func (r *rateLimiter) allow(key string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.swept) > time.Minute { // forget idle clients
		for k, b := range r.buckets {
			if now.Sub(b.last) > time.Minute {
				delete(r.buckets, k)
			}
		}
		r.swept = now
	}
	b, ok := r.buckets[key]
	if !ok {
		b = &bucket{tokens: r.burst, last: now}
		r.buckets[key] = b
	}
	b.tokens = min(r.burst, b.tokens+now.Sub(b.last).Seconds()*r.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// logLimit allows one log line per second.
type logLimit struct {
	mu   sync.Mutex
	last time.Time
}

// Allow says whether to log now.
func (l *logLimit) Allow() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now := time.Now(); now.Sub(l.last) >= time.Second {
		l.last = now
		return true
	}
	return false
}
