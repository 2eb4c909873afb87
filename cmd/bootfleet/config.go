package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/parser"

	"github.com/bootfleet/bootfleet/profiles"
)

// Config is the server's configuration: bootfleet.yaml, with every key also
// a flag of `serve` (flags win) and an environment variable BOOTFLEET_<FLAG>.
type Config struct {
	DataDir  string      `yaml:"data_dir"`
	Profiles string      `yaml:"profiles"`
	LogLevel string      `yaml:"log_level"`
	HTTP     HTTPConfig  `yaml:"http"`
	DHCP     DHCPConfig  `yaml:"dhcp"`
	TFTP     TFTPConfig  `yaml:"tftp"`
	Etcd     EtcdConfig  `yaml:"etcd"`
	Fleet    FleetConfig `yaml:"fleet"`

	// reservationAt locates each dhcp.reservations entry of the file
	// (path:line:col of its address), for errors found at start-up.
	reservationAt map[string]string
}

// HTTPConfig is the boot and API listener.
type HTTPConfig struct {
	Listen string `yaml:"listen"`
	// PublicURL is the base URL nodes use to reach this server; empty means
	// "the Host the request came to".
	PublicURL string `yaml:"public_url"`
}

// DHCPConfig configures the DHCP server.
type DHCPConfig struct {
	Mode                 string        `yaml:"mode"`
	Interface            string        `yaml:"interface"`
	Pool                 PoolConfig    `yaml:"pool"`
	LeaseTime            time.Duration `yaml:"lease_time"`
	Router               string        `yaml:"router"`
	DNS                  []string      `yaml:"dns"`
	Domain               string        `yaml:"domain"`
	RouterAdvertisements bool          `yaml:"router_advertisements"`
	// SharedPool shares the pool (in blocks claimed in etcd) and the
	// leases with the other servers of the etcd cluster; off, this server
	// owns the whole pool (only one DHCP server on the segment).
	SharedPool bool `yaml:"shared_pool"`
	// Reservations give a MAC (any form) always the same address.
	Reservations map[string]string `yaml:"reservations"`
}

// PoolConfig is the range of addresses full mode hands out.
type PoolConfig struct {
	Start string `yaml:"start"`
	End   string `yaml:"end"`
}

// TFTPConfig configures the TFTP server.
type TFTPConfig struct {
	Enabled bool   `yaml:"enabled"`
	Listen  string `yaml:"listen"`
}

// EtcdConfig selects an external etcd cluster or configures the embedded one.
type EtcdConfig struct {
	Endpoints    []string `yaml:"endpoints"`
	ListenClient string   `yaml:"listen_client"`
	ListenPeer   string   `yaml:"listen_peer"`
	// For an external cluster: user/password and TLS client certificates.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	CAFile   string `yaml:"ca_file"`
}

// FleetConfig configures scheduling.
type FleetConfig struct {
	NodeTTL time.Duration `yaml:"node_ttl"`
	// AgentDir holds bootfleet-agent-amd64 and -arm64, served to nodes;
	// empty means the directory of the bootfleet binary.
	AgentDir string `yaml:"agent_dir"`
}

// DefaultConfig is what `serve` runs with when nothing is configured.
func DefaultConfig() Config {
	return Config{
		DataDir:  "./bootfleet-data",
		Profiles: "./profiles",
		LogLevel: "info",
		HTTP:     HTTPConfig{Listen: ":8080"},
		DHCP: DHCPConfig{
			Mode:                 "off",
			LeaseTime:            time.Hour,
			RouterAdvertisements: true,
			SharedPool:           true,
		},
		TFTP: TFTPConfig{Enabled: true, Listen: ":69"},
		Etcd: EtcdConfig{
			ListenClient: "http://127.0.0.1:2379",
			ListenPeer:   "http://127.0.0.1:2380",
		},
		Fleet: FleetConfig{NodeTTL: 10 * time.Second},
	}
}

// loadConfigFile reads a bootfleet.yaml over the defaults. Unknown keys and
// wrong types are errors located as path:line:col.
func loadConfigFile(path string, cfg *Config) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	if err := yaml.UnmarshalWithOptions(data, cfg, yaml.Strict()); err != nil {
		var ye yaml.Error
		if errors.As(err, &ye) {
			if tk := ye.GetToken(); tk != nil && tk.Position != nil {
				return fmt.Errorf("%s:%d:%d: %s", path, tk.Position.Line, tk.Position.Column, ye.GetMessage())
			}
			return fmt.Errorf("%s: %s", path, ye.GetMessage())
		}
		return fmt.Errorf("%s: %w", path, err)
	}
	cfg.reservationAt = reservationPositions(path, data)
	return nil
}

// reservationPositions finds where each dhcp.reservations entry is written.
func reservationPositions(path string, data []byte) map[string]string {
	out := map[string]string{}
	p, err := yaml.PathString("$.dhcp.reservations")
	if err != nil {
		return out
	}
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return out
	}
	n, err := p.FilterFile(f)
	if err != nil {
		return out
	}
	values, _ := profiles.MappingValues(n)
	for _, mv := range values {
		line, col := profiles.NodePos(mv.Value)
		out[profiles.KeyName(mv)] = fmt.Sprintf("%s:%d:%d", path, line, col)
	}
	return out
}

// Validate reports every problem of the configuration at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if c.DataDir == "" {
		bad("data_dir: must not be empty")
	}
	if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
		bad("http.listen %q: want host:port, e.g. :8080 (%v)", c.HTTP.Listen, err)
	}
	if c.HTTP.PublicURL != "" {
		u, err := url.Parse(c.HTTP.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("http.public_url %q: want an absolute http(s) URL nodes can reach, e.g. http://10.77.0.1:8080", c.HTTP.PublicURL)
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log_level %q: want debug, info, warn or error", c.LogLevel)
	}
	switch c.DHCP.Mode {
	case "off":
	case "full", "proxy":
		if c.DHCP.Interface == "" {
			bad("dhcp.interface: required when dhcp.mode is %s (bootfleet serves DHCP only on the interface you name)", c.DHCP.Mode)
		}
		if c.DHCP.Mode == "full" {
			start, err1 := netip.ParseAddr(c.DHCP.Pool.Start)
			end, err2 := netip.ParseAddr(c.DHCP.Pool.End)
			switch {
			case err1 != nil || !start.Is4():
				bad("dhcp.pool.start %q: want an IPv4 address", c.DHCP.Pool.Start)
			case err2 != nil || !end.Is4():
				bad("dhcp.pool.end %q: want an IPv4 address", c.DHCP.Pool.End)
			case end.Less(start):
				bad("dhcp.pool: end %s is before start %s", end, start)
			}
			if c.DHCP.LeaseTime < time.Minute {
				bad("dhcp.lease_time %s: want at least 1m", c.DHCP.LeaseTime)
			}
		}
		if c.DHCP.Router != "" {
			if a, err := netip.ParseAddr(c.DHCP.Router); err != nil || !a.Is4() {
				bad("dhcp.router %q: want an IPv4 address", c.DHCP.Router)
			}
		}
		seen := map[string]string{}
		for mac, ip := range c.DHCP.Reservations {
			norm, err := profiles.NormalizeMAC(mac)
			if err != nil {
				bad("dhcp.reservations: %v", err)
				continue
			}
			if a, err := netip.ParseAddr(ip); err != nil || !a.Is4() {
				bad("dhcp.reservations[%s] %q: want an IPv4 address", mac, ip)
				continue
			}
			if other, dup := seen[ip]; dup {
				bad("dhcp.reservations: %s and %s both want %s", other, norm, ip)
			}
			seen[ip] = norm
		}
		for i, d := range c.DHCP.DNS {
			if a, err := netip.ParseAddr(d); err != nil || !a.Is4() {
				bad("dhcp.dns[%d] %q: want an IPv4 address", i, d)
			}
		}
	default:
		bad("dhcp.mode %q: want off, full or proxy", c.DHCP.Mode)
	}
	if c.TFTP.Enabled {
		if _, _, err := net.SplitHostPort(c.TFTP.Listen); err != nil {
			bad("tftp.listen %q: want host:port, e.g. :69 (%v)", c.TFTP.Listen, err)
		}
	}
	for i, e := range c.Etcd.Endpoints {
		if u, err := url.Parse(e); err != nil || u.Host == "" {
			bad("etcd.endpoints[%d] %q: want a URL such as http://10.0.0.5:2379", i, e)
		}
	}
	if (c.Etcd.CertFile == "") != (c.Etcd.KeyFile == "") {
		bad("etcd.cert_file and etcd.key_file: give both or neither")
	}
	if c.Fleet.NodeTTL < 2*time.Second {
		bad("fleet.node_ttl %s: want at least 2s", c.Fleet.NodeTTL)
	}
	if len(errs) == 0 {
		return nil
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return fmt.Errorf("invalid configuration:\n  %s", strings.Join(msgs, "\n  "))
}
