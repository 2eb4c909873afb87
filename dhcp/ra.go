package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"
)

// Advertiser sends IPv6 router advertisements on the DHCP interface, as
// dnsmasq's enable-ra with an ra-only ULA range does: a unique local /64
// for address autoconfiguration and a router lifetime of 0 (this server is
// no default router). iPXE waits about 16 s for an RA on every boot when
// none comes; with one, its IPv6 setup ends at once.
type Advertiser struct {
	Interface string
	// Prefix is the /64 advertised; default fdbf:AABB:CCDD::/64 from the
	// IPv4 subnet AA.BB.CC.DD.
	Prefix   netip.Prefix
	Interval time.Duration // default 10s; solicitations are answered at once
	Log      *slog.Logger
}

// ULAFor returns the default advertised prefix for an IPv4 subnet.
func ULAFor(subnet netip.Prefix) netip.Prefix {
	v4 := subnet.Masked().Addr().As4()
	var b [16]byte
	b[0], b[1] = 0xfd, 0xbf
	copy(b[2:6], v4[:])
	return netip.PrefixFrom(netip.AddrFrom16(b), 64)
}

// Run advertises until ctx ends. It waits up to 30 s for the interface's
// link-local address (IPv6 duplicate address detection takes a moment).
func (a *Advertiser) Run(ctx context.Context) error {
	if a.Interval <= 0 {
		a.Interval = 10 * time.Second
	}
	if a.Log == nil {
		a.Log = slog.New(slog.DiscardHandler)
	}
	ifi, err := net.InterfaceByName(a.Interface)
	if err != nil {
		return fmt.Errorf("router advertisements: %w", err)
	}
	var conn *ndp.Conn
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, _, err = ndp.Listen(ifi, ndp.LinkLocal)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("router advertisements on %s: %w (is IPv6 enabled on it?)", a.Interface, err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
	defer conn.Close()
	if err := conn.JoinGroup(netip.MustParseAddr("ff02::2")); err != nil {
		return fmt.Errorf("router advertisements: join all-routers: %w", err)
	}
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterSolicitation)
	if err := conn.SetICMPFilter(&f); err != nil {
		return fmt.Errorf("router advertisements: %w", err)
	}
	ra := &ndp.RouterAdvertisement{
		CurrentHopLimit: 64,
		RouterLifetime:  0,
		Options: []ndp.Option{
			&ndp.PrefixInformation{
				PrefixLength: 64, OnLink: true, AutonomousAddressConfiguration: true,
				ValidLifetime: 2 * time.Hour, PreferredLifetime: time.Hour, Prefix: a.Prefix.Addr(),
			},
			&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: ifi.HardwareAddr},
		},
	}
	allNodes := netip.MustParseAddr("ff02::1")
	send := func() {
		if err := conn.WriteTo(ra, nil, allNodes); err != nil && ctx.Err() == nil {
			a.Log.Warn("router advertisement not sent", "interface", a.Interface, "error", err)
		}
	}
	a.Log.Info("sending IPv6 router advertisements", "interface", a.Interface, "prefix", a.Prefix)
	solicited := make(chan struct{}, 1)
	go func() {
		for {
			if _, _, _, err := conn.ReadFrom(); err != nil {
				if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
					return
				}
				continue
			}
			select {
			case solicited <- struct{}{}:
			default:
			}
		}
	}()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	t := time.NewTicker(a.Interval)
	defer t.Stop()
	send()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-solicited:
		}
		send()
	}
}
