// Package storm simulates a boot storm: many machines powered on together,
// each running the real protocol sequence against a running bootfleet
// server — DHCP as PXE firmware and then as iPXE, TFTP of the iPXE binary,
// the boot scripts, kernel and initrd downloads, Ignition, and the agent's
// join and heartbeats with the token its Ignition carries — and reports
// per phase count, failures and latency percentiles, the time for the
// whole fleet to be ready, and what the server process used meanwhile.
//
// All machines run from one process: DHCP through one UDP socket on port 68
// of the client interface (the server broadcasts its replies, which are
// told apart by transaction ID), HTTP with a connection pool of their own
// per machine, TFTP with a socket of their own per transfer.
package storm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/iana"
	dto "github.com/prometheus/client_model/go"
)

// Arrival is how the machines are powered on: all at once (Ramp zero) or
// spread evenly over Ramp.
type Arrival struct {
	Ramp time.Duration
}

// ParseArrival reads "all" or "ramp:DURATION" (e.g. ramp:30s).
func ParseArrival(s string) (Arrival, error) {
	if s == "all" || s == "" {
		return Arrival{}, nil
	}
	if d, ok := strings.CutPrefix(s, "ramp:"); ok {
		r, err := time.ParseDuration(d)
		if err == nil && r > 0 {
			return Arrival{Ramp: r}, nil
		}
	}
	return Arrival{}, fmt.Errorf("arrival %q: want all or ramp:DURATION (e.g. ramp:30s)", s)
}

func (a Arrival) String() string {
	if a.Ramp <= 0 {
		return "all at once"
	}
	return "ramp over " + a.Ramp.String()
}

// Config describes a storm.
type Config struct {
	// Server is the base URL of the server's HTTP side, as machines reach
	// it (http://10.78.0.1:8080). Scripts, Ignition and the agent's env
	// give the URLs actually followed.
	Server string
	// Nodes is the number of machines.
	Nodes int
	// Arrival is how they are powered on.
	Arrival Arrival
	// PXEShare is the share of machines with PXE firmware (half legacy
	// BIOS, half UEFI), which fetch the iPXE binary over TFTP first; the
	// others have iPXE in ROM and start at the iPXE DHCP.
	PXEShare float64
	// Interface is the client interface DHCP runs on. Empty skips DHCP:
	// machines then fetch the server's /boot.ipxe and the iPXE binary by
	// name directly.
	Interface string
	// TFTP is the TFTP server (host:port); default the Server's host, port 69.
	TFTP string
	// FirstMAC is the first machine's MAC; the others count up from it.
	// Default 02:bf:00:00:00:00.
	FirstMAC net.HardwareAddr
	// Heartbeats is how many heartbeats each agent sends after joining.
	Heartbeats int
	// HeartbeatInterval overrides the interval the server's join answer
	// gives.
	HeartbeatInterval time.Duration
	// DHCPTimeout is the first retransmission timeout (doubling each try)
	// and DHCPTries the number of tries per message; default 2 s and 5,
	// near what PXE firmware does (4, 8, 16, 32 s).
	DHCPTimeout time.Duration
	DHCPTries   int
	// TFTPTimeout and TFTPRetries are the TFTP client's wait for each block
	// and its tries per block, as PXE firmware's; default 2 s and 5.
	TFTPTimeout time.Duration
	TFTPRetries int
	// RequestTimeout bounds each HTTP request and TFTP transfer; default 5m.
	RequestTimeout time.Duration
	// JoinTries is how many times an agent tries to join before its
	// machine counts as failed (the real agent never gives up); default 5.
	JoinTries int
	// BootDelay is the time between the last initrd and the Ignition
	// fetch (the kernel booting); default none.
	BootDelay time.Duration
	// ServerPID is the server process to sample CPU and memory of; 0 for none.
	ServerPID int
	// RateStreams and RateDuration measure the asset download rate of
	// this client alone before the storm; RateStreams 0 skips it.
	RateStreams  int
	RateDuration time.Duration
	// Metrics scrapes the server's /metrics before and after the storm.
	Metrics bool
	// Log receives progress; nil discards it.
	Log *slog.Logger
}

func (c *Config) defaults() error {
	if c.Nodes <= 0 {
		return errors.New("storm: nodes must be at least 1")
	}
	if c.PXEShare < 0 || c.PXEShare > 1 {
		return errors.New("storm: the PXE share is between 0 and 1")
	}
	u, err := url.Parse(c.Server)
	if err != nil || u.Host == "" {
		return fmt.Errorf("storm: server %q: want a URL such as http://10.78.0.1:8080", c.Server)
	}
	c.Server = strings.TrimSuffix(c.Server, "/")
	if c.TFTP == "" {
		c.TFTP = net.JoinHostPort(u.Hostname(), "69")
	}
	if c.FirstMAC == nil {
		c.FirstMAC = net.HardwareAddr{0x02, 0xbf, 0, 0, 0, 0}
	}
	if len(c.FirstMAC) != 6 {
		return fmt.Errorf("storm: first MAC %v is not 6 bytes", c.FirstMAC)
	}
	if c.DHCPTimeout <= 0 {
		c.DHCPTimeout = 2 * time.Second
	}
	if c.DHCPTries <= 0 {
		c.DHCPTries = 5
	}
	if c.TFTPTimeout <= 0 {
		c.TFTPTimeout = 2 * time.Second
	}
	if c.TFTPRetries <= 0 {
		c.TFTPRetries = 5
	}
	if c.JoinTries <= 0 {
		c.JoinTries = 5
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 5 * time.Minute
	}
	if c.RateDuration <= 0 {
		c.RateDuration = 5 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}

// MAC returns the i-th machine's MAC (from 0).
func (c *Config) MAC(i int) net.HardwareAddr {
	mac := make(net.HardwareAddr, 6)
	copy(mac, c.FirstMAC)
	n := uint64(mac[2])<<24 | uint64(mac[3])<<16 | uint64(mac[4])<<8 | uint64(mac[5])
	n += uint64(i)
	mac[2], mac[3], mac[4], mac[5] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	return mac
}

// firmware is how the i-th machine boots.
type firmware int

const (
	ipxeROM firmware = iota
	pxeBIOS
	pxeUEFI
)

func (c *Config) firmware(i int) firmware {
	// Spread the PXE machines over the fleet so a ramp mixes them.
	pxe := int(float64(i+1)*c.PXEShare) > int(float64(i)*c.PXEShare)
	switch {
	case !pxe:
		return ipxeROM
	case int(float64(i)*c.PXEShare)%2 == 0:
		return pxeBIOS
	default:
		return pxeUEFI
	}
}

func (f firmware) arch() iana.Arch {
	if f == pxeUEFI {
		return iana.EFI_X86_64
	}
	return iana.INTEL_X86PC
}

// storm is one run in progress.
type storm struct {
	cfg    Config
	dhcp   *dhcpClient
	phases map[string]*phase
	start  time.Time
	bufs   *sync.Pool

	ready    atomic.Int64
	complete atomic.Int64
	lastJoin atomic.Int64 // unix nanoseconds
}

// Run powers the machines on as configured and waits until each has
// joined and sent its heartbeats, or failed, or ctx ends.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	s := &storm{cfg: cfg, phases: map[string]*phase{}, bufs: newBufferPool()}
	for _, p := range PhaseOrder {
		s.phases[p] = newPhase()
	}
	rep := &Report{Nodes: cfg.Nodes, Arrival: cfg.Arrival.String(), PXEShare: cfg.PXEShare}
	plain := &http.Client{Timeout: 30 * time.Second}
	if cfg.RateStreams > 0 {
		r, err := measureRate(ctx, cfg, plain, s.bufs)
		if err != nil {
			return nil, err
		}
		rep.Rate = r
		cfg.Log.Info("asset rate alone", "streams", r.Streams, "MiB/s", r.BytesPerSec/(1<<20))
	}
	if cfg.Interface != "" {
		c, err := newDHCPClient(cfg.Interface, cfg.DHCPTimeout, cfg.DHCPTries)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		s.dhcp = c
	}
	metricsURL := cfg.Server + "/metrics"
	var fams0 map[string]*dto.MetricFamily
	if cfg.Metrics {
		var err error
		if fams0, err = scrape(ctx, plain, metricsURL); err != nil {
			return nil, err
		}
	}

	sampleCtx, stopSampling := context.WithCancel(ctx)
	usage := make(chan *ServerUsage, 1)
	if cfg.ServerPID > 0 {
		go func() {
			u, err := sampleProc(sampleCtx, cfg.ServerPID, 250*time.Millisecond)
			if err != nil {
				cfg.Log.Warn("not sampling the server process", "error", err)
			}
			usage <- u
		}()
	} else {
		usage <- nil
	}

	s.start = time.Now()
	var wg sync.WaitGroup
	for i := range cfg.Nodes {
		if cfg.Arrival.Ramp > 0 && cfg.Nodes > 1 {
			at := s.start.Add(cfg.Arrival.Ramp * time.Duration(i) / time.Duration(cfg.Nodes-1))
			select {
			case <-ctx.Done():
			case <-time.After(time.Until(at)):
			}
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.node(ctx, i)
		}()
	}
	progressDone := make(chan struct{})
	go func() {
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-progressDone:
				return
			case <-t.C:
				cfg.Log.Info("storm", "elapsed", time.Since(s.start).Round(time.Millisecond), "ready", s.ready.Load(), "of", cfg.Nodes)
			}
		}
	}()
	wg.Wait()
	close(progressDone)
	end := time.Now()
	stopSampling()
	rep.Server = <-usage

	rep.Total = end.Sub(s.start).Seconds()
	rep.Ready = int(s.ready.Load())
	rep.Complete = int(s.complete.Load())
	if last := s.lastJoin.Load(); last > 0 {
		rep.FleetReady = time.Unix(0, last).Sub(s.start).Seconds()
	}
	for _, name := range PhaseOrder {
		st := s.phases[name].stats(name)
		if st.Count == 0 {
			continue
		}
		rep.Phases = append(rep.Phases, st)
		switch name {
		case PhaseKernel, PhaseInitrd, PhaseAgentBinary:
			rep.HTTPBytes += st.Bytes
		case PhaseTFTP:
			rep.TFTPBytes += st.Bytes
		}
	}
	if rep.Rate != nil && rep.Rate.BytesPerSec > 0 {
		rep.LineSeconds = float64(rep.HTTPBytes) / rep.Rate.BytesPerSec
	}
	if cfg.Metrics {
		fams1, err := scrape(ctx, plain, metricsURL)
		if err != nil {
			return rep, err
		}
		rep.Metrics = diffMetrics(fams0, fams1)
	}
	return rep, ctx.Err()
}
