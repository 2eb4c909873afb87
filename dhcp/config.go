// Package dhcp is bootfleet's DHCPv4 server: full mode (an authoritative
// server with a pool, reservations and persistent leases) and proxy mode
// (boot information for PXE clients on a network that has its own DHCP
// server). It chooses each client's boot file from what the client says it
// is (option 93 architecture, option 60 vendor class, option 77 user class),
// so PXE firmware gets iPXE and iPXE gets bootfleet's script, with no
// chainload loop.
package dhcp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Mode is how the server answers.
type Mode string

// Modes.
const (
	ModeFull  Mode = "full"
	ModeProxy Mode = "proxy"
)

// Config configures a Server.
type Config struct {
	Mode      Mode
	Interface string // serve only on this interface
	// ServerIP is this server's address on the interface; it is the DHCP
	// server identifier and the TFTP server. Default: the interface's
	// first IPv4 address.
	ServerIP netip.Addr
	// Subnet is the interface's network, e.g. 10.77.0.0/24. Default: from
	// the interface's address.
	Subnet       netip.Prefix
	PoolStart    netip.Addr
	PoolEnd      netip.Addr
	Router       netip.Addr
	DNS          []netip.Addr
	Domain       string
	LeaseTime    time.Duration
	Reservations map[string]netip.Addr // MAC (canonical) → address
	Boot         BootConfig
	// Listen is the address to bind; default ":67". Tests use other ports.
	Listen string
	// ClientPort is where replies to clients go; default 68.
	ClientPort int
	// Workers bounds the packets handled at once; default 64 (most of them
	// wait for the lease fsync, which their ACKs then share).
	Workers int
	// BlockSize is the number of addresses per block when the pool is
	// shared among servers (Options.Blocks); default 64.
	BlockSize int
}

// BootConfig says where clients find their boot files.
type BootConfig struct {
	// IPXEScript is the URL iPXE clients get, e.g. http://10.77.0.1:8080/boot.ipxe.
	IPXEScript string
	// HTTPBase is the URL prefix of the iPXE binaries for UEFI HTTP boot,
	// e.g. http://10.77.0.1:8080/ipxe/ (the binary name is appended).
	HTTPBase string
}

// Validate reports every problem of the configuration at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Mode != ModeFull && c.Mode != ModeProxy {
		bad("mode %q: want full or proxy", c.Mode)
	}
	if c.Interface == "" {
		bad("interface: required (bootfleet serves DHCP only on the interface you name)")
	}
	if !c.ServerIP.Is4() {
		bad("server IP %v: want the interface's IPv4 address", c.ServerIP)
	}
	if c.Boot.IPXEScript == "" {
		bad("boot: the iPXE script URL is required")
	}
	if c.Mode == ModeFull {
		if !c.Subnet.IsValid() || !c.Subnet.Addr().Is4() {
			bad("subnet %v: want an IPv4 prefix", c.Subnet)
		}
		switch {
		case !c.PoolStart.Is4() || !c.PoolEnd.Is4():
			bad("pool %v-%v: want two IPv4 addresses", c.PoolStart, c.PoolEnd)
		case c.PoolEnd.Less(c.PoolStart):
			bad("pool: end %v is before start %v", c.PoolEnd, c.PoolStart)
		case c.Subnet.IsValid() && (!c.Subnet.Contains(c.PoolStart) || !c.Subnet.Contains(c.PoolEnd)):
			bad("pool %v-%v is outside the interface's subnet %v", c.PoolStart, c.PoolEnd, c.Subnet)
		case c.ServerIP.IsValid() && !c.ServerIP.Less(c.PoolStart) && !c.PoolEnd.Less(c.ServerIP):
			bad("pool %v-%v contains the server's own address %v", c.PoolStart, c.PoolEnd, c.ServerIP)
		}
		if c.LeaseTime < time.Minute {
			bad("lease time %v: want at least 1m", c.LeaseTime)
		}
		seen := map[netip.Addr]string{}
		for mac, ip := range c.Reservations {
			if _, err := net.ParseMAC(mac); err != nil {
				bad("reservation %q: %v", mac, err)
			}
			if err := c.checkReservable(ip); err != nil {
				bad("reservation %s → %v: %v", mac, ip, err)
			}
			if other, dup := seen[ip]; dup {
				bad("reservations %s and %s both want %v", other, mac, ip)
			}
			seen[ip] = mac
		}
	}
	return errors.Join(errs...)
}
