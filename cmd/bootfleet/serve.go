package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/bootfleet/bootfleet/api"
	"github.com/bootfleet/bootfleet/dhcp"
	"github.com/bootfleet/bootfleet/fleet"
	"github.com/bootfleet/bootfleet/httpboot"
	"github.com/bootfleet/bootfleet/ignition"
	"github.com/bootfleet/bootfleet/images"
	"github.com/bootfleet/bootfleet/ipxe"
	"github.com/bootfleet/bootfleet/loadjob"
	"github.com/bootfleet/bootfleet/profiles"
	"github.com/bootfleet/bootfleet/registry"
	"github.com/bootfleet/bootfleet/tftp"
	"github.com/bootfleet/bootfleet/ui"
)

func newServeCmd() *cobra.Command {
	cfg := DefaultConfig()
	var configPath string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve HTTP boot (and DHCP, TFTP when configured) for the machines of a profiles directory",
		Long: `Serve runs the bootfleet server. With no flags it serves HTTP on :8080 from
./profiles, or from the built-in example when ./profiles does not exist, with
DHCP off. Every key of bootfleet.yaml is also a flag, and every flag can be
set as BOOTFLEET_<FLAG> in the environment; flags win over the file.`,
		Args: cobra.NoArgs,
	}
	copyFlag := bindServeFlags(cmd.Flags(), &cfg)
	cmd.Flags().StringVar(&configPath, "config", "", "server config file (bootfleet.yaml)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := applyEnv(cmd); err != nil {
			return err
		}
		final := cfg
		if configPath != "" {
			final = DefaultConfig()
			if err := loadConfigFile(configPath, &final); err != nil {
				return err
			}
			cmd.Flags().Visit(func(f *pflag.Flag) {
				if set, ok := copyFlag[f.Name]; ok {
					set(&final, &cfg)
				}
			})
		}
		if err := final.Validate(); err != nil {
			return err
		}
		profilesExplicit := cmd.Flags().Changed("profiles") || (configPath != "" && final.Profiles != DefaultConfig().Profiles)
		return serve(cmd.Context(), final, profilesExplicit, cmd.ErrOrStderr())
	}
	return cmd
}

// bindServeFlags registers a flag for every config key and returns, per
// flag, a function that copies that flag's field from one Config to another
// (used to lay flags over a config file).
func bindServeFlags(f *pflag.FlagSet, c *Config) map[string]func(dst, src *Config) {
	f.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory for local state and admin.token")
	f.StringVar(&c.Profiles, "profiles", c.Profiles, "profiles directory (groups/, profiles/, ignition/, cloud/, assets/)")
	f.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	f.StringVar(&c.HTTP.Listen, "http", c.HTTP.Listen, "HTTP listen address")
	f.StringVar(&c.HTTP.PublicURL, "public-url", c.HTTP.PublicURL, "base URL nodes use to reach this server (default: the Host of each request)")
	f.StringVar(&c.DHCP.Mode, "dhcp", c.DHCP.Mode, "DHCP mode: off, full or proxy")
	f.StringVar(&c.DHCP.Interface, "interface", c.DHCP.Interface, "network interface to serve DHCP on")
	f.StringVar(&c.DHCP.Pool.Start, "dhcp-pool-start", c.DHCP.Pool.Start, "first address of the DHCP pool")
	f.StringVar(&c.DHCP.Pool.End, "dhcp-pool-end", c.DHCP.Pool.End, "last address of the DHCP pool")
	f.DurationVar(&c.DHCP.LeaseTime, "dhcp-lease-time", c.DHCP.LeaseTime, "DHCP lease time")
	f.StringVar(&c.DHCP.Router, "dhcp-router", c.DHCP.Router, "router (default gateway) handed out by DHCP")
	f.StringSliceVar(&c.DHCP.DNS, "dhcp-dns", c.DHCP.DNS, "DNS servers handed out by DHCP")
	f.StringVar(&c.DHCP.Domain, "dhcp-domain", c.DHCP.Domain, "domain name handed out by DHCP")
	f.StringToStringVar(&c.DHCP.Reservations, "dhcp-reservation", c.DHCP.Reservations, "MAC=IP: always give this MAC this address (repeatable)")
	f.BoolVar(&c.DHCP.RouterAdvertisements, "router-advertisements", c.DHCP.RouterAdvertisements, "send IPv6 router advertisements on the DHCP interface")
	f.BoolVar(&c.DHCP.SharedPool, "dhcp-shared-pool", c.DHCP.SharedPool, "share the pool and leases with the other servers on this etcd cluster (off: this server owns the whole pool)")
	f.BoolVar(&c.TFTP.Enabled, "tftp", c.TFTP.Enabled, "serve TFTP")
	f.StringVar(&c.TFTP.Listen, "tftp-listen", c.TFTP.Listen, "TFTP listen address")
	f.StringSliceVar(&c.Etcd.Endpoints, "etcd-endpoints", c.Etcd.Endpoints, "external etcd endpoints (default: embedded etcd)")
	f.StringVar(&c.Etcd.ListenClient, "etcd-listen-client", c.Etcd.ListenClient, "embedded etcd client URL")
	f.StringVar(&c.Etcd.ListenPeer, "etcd-listen-peer", c.Etcd.ListenPeer, "embedded etcd peer URL")
	f.StringVar(&c.Etcd.Username, "etcd-username", c.Etcd.Username, "external etcd user")
	f.StringVar(&c.Etcd.Password, "etcd-password", c.Etcd.Password, "external etcd password (better: BOOTFLEET_ETCD_PASSWORD)")
	f.StringVar(&c.Etcd.CertFile, "etcd-cert", c.Etcd.CertFile, "TLS client certificate for etcd")
	f.StringVar(&c.Etcd.KeyFile, "etcd-key", c.Etcd.KeyFile, "TLS client key for etcd")
	f.StringVar(&c.Etcd.CAFile, "etcd-ca", c.Etcd.CAFile, "CA that signed etcd's server certificate")
	f.DurationVar(&c.Fleet.NodeTTL, "node-ttl", c.Fleet.NodeTTL, "time without heartbeat before a node is lost")
	f.StringVar(&c.Fleet.AgentDir, "agent-dir", c.Fleet.AgentDir, "directory with bootfleet-agent-amd64/-arm64 to serve to nodes (default: next to this binary)")
	return map[string]func(dst, src *Config){
		"data-dir":              func(d, s *Config) { d.DataDir = s.DataDir },
		"profiles":              func(d, s *Config) { d.Profiles = s.Profiles },
		"log-level":             func(d, s *Config) { d.LogLevel = s.LogLevel },
		"http":                  func(d, s *Config) { d.HTTP.Listen = s.HTTP.Listen },
		"public-url":            func(d, s *Config) { d.HTTP.PublicURL = s.HTTP.PublicURL },
		"dhcp":                  func(d, s *Config) { d.DHCP.Mode = s.DHCP.Mode },
		"interface":             func(d, s *Config) { d.DHCP.Interface = s.DHCP.Interface },
		"dhcp-pool-start":       func(d, s *Config) { d.DHCP.Pool.Start = s.DHCP.Pool.Start },
		"dhcp-pool-end":         func(d, s *Config) { d.DHCP.Pool.End = s.DHCP.Pool.End },
		"dhcp-lease-time":       func(d, s *Config) { d.DHCP.LeaseTime = s.DHCP.LeaseTime },
		"dhcp-router":           func(d, s *Config) { d.DHCP.Router = s.DHCP.Router },
		"dhcp-dns":              func(d, s *Config) { d.DHCP.DNS = s.DHCP.DNS },
		"dhcp-domain":           func(d, s *Config) { d.DHCP.Domain = s.DHCP.Domain },
		"router-advertisements": func(d, s *Config) { d.DHCP.RouterAdvertisements = s.DHCP.RouterAdvertisements },
		"dhcp-shared-pool":      func(d, s *Config) { d.DHCP.SharedPool = s.DHCP.SharedPool },
		"dhcp-reservation":      func(d, s *Config) { d.DHCP.Reservations = s.DHCP.Reservations },
		"tftp":                  func(d, s *Config) { d.TFTP.Enabled = s.TFTP.Enabled },
		"tftp-listen":           func(d, s *Config) { d.TFTP.Listen = s.TFTP.Listen },
		"etcd-endpoints":        func(d, s *Config) { d.Etcd.Endpoints = s.Etcd.Endpoints },
		"etcd-listen-client":    func(d, s *Config) { d.Etcd.ListenClient = s.Etcd.ListenClient },
		"etcd-listen-peer":      func(d, s *Config) { d.Etcd.ListenPeer = s.Etcd.ListenPeer },
		"etcd-username":         func(d, s *Config) { d.Etcd.Username = s.Etcd.Username },
		"etcd-password":         func(d, s *Config) { d.Etcd.Password = s.Etcd.Password },
		"etcd-cert":             func(d, s *Config) { d.Etcd.CertFile = s.Etcd.CertFile },
		"etcd-key":              func(d, s *Config) { d.Etcd.KeyFile = s.Etcd.KeyFile },
		"etcd-ca":               func(d, s *Config) { d.Etcd.CAFile = s.Etcd.CAFile },
		"node-ttl":              func(d, s *Config) { d.Fleet.NodeTTL = s.Fleet.NodeTTL },
		"agent-dir":             func(d, s *Config) { d.Fleet.AgentDir = s.Fleet.AgentDir },
	}
}

func newLogger(level string, w *os.File) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level)) // validated by Config.Validate
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

// serve wires the server together, in this one place: etcd (embedded or
// external) → registry; profiles watcher → Ignition renderer → HTTP boot
// handler; API; TFTP; all on one errgroup until ctx ends.
func serve(ctx context.Context, cfg Config, profilesExplicit bool, stderr io.Writer) error {
	log := newLogger(cfg.LogLevel, os.Stderr)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir %s: %w (choose another with --data-dir)", cfg.DataDir, err)
	}
	token, err := ensureAdminToken(cfg.DataDir)
	if err != nil {
		return err
	}
	fsys, name, err := profilesSource(cfg.Profiles, profilesExplicit)
	if err != nil {
		return err
	}
	if name == builtinName {
		log.Warn("serving the built-in example profiles; create ./profiles or pass --profiles DIR to serve your own")
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bootfleet_profiles_reloads_total",
		Help: "Profiles directory reloads by result (ok, error).",
	}, []string{"result"})
	valid := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "bootfleet_profiles_valid",
		Help: "1 when the profiles directory on disk is what is served, 0 when the last reload failed and the last good set is still served.",
	})
	reg.MustRegister(reloads, valid)

	// Profiles and their renderer, swapped together on every good reload;
	// the groups' DHCP reservations go to the DHCP server (once it runs)
	// with them, and a reservation it refuses refuses the reload.
	var boot *httpboot.Server
	var initial httpboot.Snapshot
	var dhcpLive atomic.Pointer[dhcp.Server]
	onLoad := func(set *profiles.Set) error {
		r, err := ignition.New(set, ignition.Options{Log: log, Inject: ignition.AgentInjector()})
		if err != nil {
			return err
		}
		if d := dhcpLive.Load(); d != nil {
			if err := d.SetReservations(dhcpReservations(cfg, set)); err != nil {
				return fmt.Errorf("DHCP reservations:\n%w", err)
			}
		}
		for _, w := range slices.Concat(set.Warnings, r.Warnings) {
			log.Warn("profiles", "warning", w.Error())
		}
		snap := httpboot.Snapshot{Set: set, Renderer: r}
		if boot == nil {
			initial = snap
		} else {
			boot.Swap(snap)
		}
		return nil
	}
	onResult := func(err error) {
		if err != nil {
			reloads.WithLabelValues("error").Inc()
			valid.Set(0)
			return
		}
		reloads.WithLabelValues("ok").Inc()
		valid.Set(1)
	}
	watcher, err := profiles.NewWatcher(profiles.WatcherConfig{FS: fsys, Root: name, OnLoad: onLoad, OnResult: onResult, Log: log})
	if err != nil {
		printErrors(stderr, err)
		return fmt.Errorf("profiles %s are invalid; fix the errors above (bootfleet validate %s)", name, cfg.Profiles)
	}
	valid.Set(1)

	// The registry: embedded etcd unless endpoints are given.
	endpoints := cfg.Etcd.Endpoints
	var embedded *registry.Embedded
	if len(endpoints) == 0 {
		embedded, err = registry.StartEmbedded(ctx, registry.EmbeddedConfig{
			Dir:          filepath.Join(cfg.DataDir, "etcd"),
			ListenClient: cfg.Etcd.ListenClient,
			ListenPeer:   cfg.Etcd.ListenPeer,
			Log:          log,
		})
		if err != nil {
			return fmt.Errorf("%w (another bootfleet or etcd on these ports? set --etcd-listen-client/--etcd-listen-peer, or --etcd-endpoints for an external cluster)", err)
		}
		defer embedded.Close()
		endpoints = embedded.Endpoints()
	}
	etcdConfig := clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		Username: cfg.Etcd.Username, Password: cfg.Etcd.Password}
	if cfg.Etcd.CertFile != "" || cfg.Etcd.CAFile != "" {
		tlsInfo := transport.TLSInfo{CertFile: cfg.Etcd.CertFile, KeyFile: cfg.Etcd.KeyFile, TrustedCAFile: cfg.Etcd.CAFile}
		if etcdConfig.TLS, err = tlsInfo.ClientConfig(); err != nil {
			return fmt.Errorf("etcd TLS: %w", err)
		}
	}
	etcdClient, err := clientv3.New(etcdConfig)
	if err != nil {
		return fmt.Errorf("etcd %s: %w", strings.Join(endpoints, ","), err)
	}
	defer etcdClient.Close()
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = etcdClient.Get(pingCtx, "/bootfleet/")
	cancel()
	if err != nil {
		return fmt.Errorf("etcd %s is unreachable: %w (check --etcd-endpoints and that the cluster is up)", strings.Join(endpoints, ","), err)
	}
	serverName := serverID(cfg)
	inventory, err := registry.New(registry.Config{Client: etcdClient, Server: serverName, Log: log})
	if err != nil {
		return err
	}
	recorder := registry.NewRecorder(inventory, 0)
	recorderCounter := func(name, help string, v func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v()) })
	}
	reg.MustRegister(
		recorderCounter("bootfleet_registry_events_written_total", "Boot events written to the nodes' timelines in etcd.",
			func() uint64 { w, _, _ := recorder.Stats(); return w }),
		recorderCounter("bootfleet_registry_events_dropped_total", "Boot events dropped because the queue to etcd was full (timelines miss them).",
			func() uint64 { _, d, _ := recorder.Stats(); return d }),
		recorderCounter("bootfleet_registry_write_failures_total", "Failed batch writes of boot events to etcd (retried).",
			func() uint64 { _, _, f := recorder.Stats(); return f }),
		recorderCounter("bootfleet_registry_events_coalesced_total", "Boot events not written again because the node repeated its last step.",
			recorder.Coalesced),
	)
	tokens, err := fleet.LoadTokens(ctx, etcdClient, "")
	if err != nil {
		return err
	}
	fl, err := fleet.New(fleet.Config{Client: etcdClient, Registry: inventory, NodeTTL: cfg.Fleet.NodeTTL, Server: serverName, Log: log.With("component", "fleet")})
	if err != nil {
		return err
	}
	reg.MustRegister(fl.Metrics())
	agentDir := cfg.Fleet.AgentDir
	if agentDir == "" {
		if exe, err := os.Executable(); err == nil {
			agentDir = filepath.Dir(exe)
		}
	}
	var etcdHealth atomic.Pointer[error] // nil while etcd answers
	nodeCache := registry.NewCache(inventory)

	boot, err = httpboot.New(httpboot.Config{
		PublicURL: cfg.HTTP.PublicURL,
		Log:       log,
		Metrics:   reg,
		Health: func() error {
			var problems []error
			if loaded, lastErr := watcher.Status(); lastErr != nil {
				problems = append(problems, fmt.Errorf("profiles: last reload failed, still serving the set loaded at %s:\n%v", loaded.Format(time.RFC3339), lastErr))
			}
			if err := etcdHealth.Load(); err != nil {
				problems = append(problems, fmt.Errorf("etcd: %v (boot files are still served; the inventory catches up when etcd is back)", *err))
			}
			return errors.Join(problems...)
		},
		Labels: func(mac string) map[string]string {
			n, _ := nodeCache.Get(mac)
			return n.Labels
		},
		NextBoot: func(mac string) string {
			n, _ := nodeCache.Get(mac)
			return n.NextBoot
		},
		ClearNextBoot: func(mac string) {
			go func() {
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				if _, err := inventory.SetNextBoot(cctx, mac, ""); err != nil {
					log.Warn("clearing next boot failed", "mac", mac, "error", err)
				}
			}()
		},
		OnEvent:    func(e httpboot.Event) { recorder.Record(bootObservation(e)) },
		Binaries:   ipxe.Embedded(),
		AgentToken: tokens.Token,
		AgentDir:   agentDir,
	}, initial)
	if err != nil {
		return err
	}

	loadJobs, err := loadjob.New(loadjob.Config{Client: etcdClient, Units: fl, PublicURL: cfg.HTTP.PublicURL, Log: log.With("component", "loadjob")})
	if err != nil {
		return err
	}
	var dhcpServer *dhcp.Server // set below when DHCP is on; read by the API after start
	apiServer, err := api.New(api.Config{Registry: inventory, AdminToken: token, Log: log, Leases: func() []dhcp.Lease {
		if dhcpServer == nil {
			return []dhcp.Lease{}
		}
		return dhcpServer.Leases()
	}, Fleet: fl, Tokens: tokens, Images: func(ref string) (string, bool) {
		return images.FindContainerArchive(filepath.Join(cfg.DataDir, images.ContainerArchiveDir), ref)
	}, Metrics: reg, Load: loadJobs})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/api/", apiServer.Handler())
	// Go's profiler, for the admin only (it reveals internals).
	mux.Handle("/debug/pprof/", apiServer.RequireAdmin(http.HandlerFunc(pprof.Index)))
	mux.Handle("/debug/pprof/profile", apiServer.RequireAdmin(http.HandlerFunc(pprof.Profile)))
	dashboard, err := ui.New(token)
	if err != nil {
		return err
	}
	mux.Handle("/ui/", dashboard)
	// The Ignition a node would get, for the dashboard (admin only: it
	// holds the node's agent token); unlike /ignition it records nothing.
	mux.Handle("GET /api/v1/ignition", apiServer.RequireAdmin(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cfg, err := boot.PreviewIgnition(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(cfg)
	})))
	mux.Handle("/", boot.Handler())
	ln, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("http: %w (is another server on %s? choose another with --http)", err, cfg.HTTP.Listen)
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	g, gctx := errgroup.WithContext(ctx)
	// Requests live in the server's context: on shutdown the agents' long
	// polls and node watches end at once instead of holding Shutdown up.
	srv.BaseContext = func(net.Listener) context.Context { return gctx }
	if cfg.DHCP.Mode != "off" {
		var shared *registry.SharedPool
		if cfg.DHCP.Mode == "full" && cfg.DHCP.SharedPool {
			// Servers sharing this etcd cluster share the pool in blocks,
			// and their leases in one table.
			shared, err = registry.NewSharedPool(registry.SharedPoolConfig{Client: etcdClient, Pool: cfg.DHCP.Pool.Start + "-" + cfg.DHCP.Pool.End,
				Server: serverName, StaleAfter: cfg.DHCP.LeaseTime + 10*time.Minute})
			if err != nil {
				return err
			}
		}
		dhcpServer, err = newDHCP(cfg, reg, log, func(e dhcp.Event) { recorder.Record(dhcpObservation(e)) }, shared)
		if err != nil {
			return err
		}
		if err := dhcpServer.SetReservations(dhcpReservations(cfg, watcher.Current())); err != nil {
			return fmt.Errorf("DHCP reservations (bootfleet.yaml and the profiles' groups):\n%w", err)
		}
		dhcpLive.Store(dhcpServer)
		if err := dhcpServer.Listen(); err != nil {
			return err
		}
		g.Go(func() error { return dhcpServer.Run(gctx) })
		// Boot events reach etcd a few milliseconds after the ACK; a
		// kill -9 in between would leave an acknowledged machine out of
		// the inventory. Its lease is on disk: restore it from there.
		leases := dhcpServer.Leases()
		g.Go(func() error { restoreInventory(gctx, inventory, leases, serverName, log); return nil })
		if cfg.DHCP.Mode == "proxy" {
			// PXE firmware asks the proxy again on port 4011 for its boot file.
			pxe, err := dhcpServer.ListenPXE("")
			if err != nil {
				return err
			}
			g.Go(func() error { return pxe.Serve(gctx) })
		}
		if cfg.DHCP.Mode == "full" && cfg.DHCP.RouterAdvertisements {
			ra := &dhcp.Advertiser{Interface: cfg.DHCP.Interface, Prefix: dhcp.ULAFor(dhcpServer.Subnet()), Log: log.With("component", "ra")}
			g.Go(func() error { return ra.Run(gctx) })
		}
	}
	if cfg.TFTP.Enabled {
		tftpServer, err := tftp.New(tftp.Config{
			Listen:     cfg.TFTP.Listen,
			Binaries:   ipxe.Embedded(),
			Assets:     func() fs.FS { return watcher.Current().Assets() },
			Log:        log.With("component", "tftp"),
			Registerer: reg,
		})
		if err != nil {
			return err
		}
		g.Go(func() error { return tftpServer.Run(gctx) })
	}
	log.Info("bootfleet serving", "http", ln.Addr().String(), "profiles", name, "groups", len(initial.Set.Groups),
		"dhcp", cfg.DHCP.Mode, "tftp", cfg.TFTP.Enabled, "etcd", strings.Join(endpoints, ","), "version", version)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	g.Go(func() error { return watcher.Run(gctx) })
	g.Go(func() error { return recorder.Run(gctx) })
	g.Go(func() error { return nodeCache.Run(gctx) })
	g.Go(func() error { return fl.Run(gctx) })
	g.Go(func() error { loadJobs.Run(gctx); return nil })
	g.Go(func() error { probeEtcd(gctx, etcdClient, &etcdHealth, log); return nil })
	if embedded != nil {
		g.Go(func() error {
			select {
			case err := <-embedded.Err():
				return fmt.Errorf("embedded etcd: %w", err)
			case <-gctx.Done():
				return nil
			}
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		log.Info("shutting down")
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := srv.Shutdown(shutdownCtx)
		_ = recorder.Flush(shutdownCtx)
		return err
	})
	return g.Wait()
}

// probeEtcd checks every two seconds that etcd answers, for /healthz.
func probeEtcd(ctx context.Context, cli *clientv3.Client, health *atomic.Pointer[error], log *slog.Logger) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
		_, err := cli.Get(pctx, "/bootfleet/health", clientv3.WithCountOnly())
		cancel()
		if ctx.Err() != nil {
			return
		}
		was := health.Load()
		switch {
		case err != nil && was == nil:
			log.Error("etcd unreachable; serving boot files from memory until it is back", "error", err)
			health.Store(&err)
		case err != nil:
			health.Store(&err)
		case was != nil:
			log.Info("etcd reachable again")
			health.Store(nil)
		}
	}
}

// newDHCP builds the DHCP server from the config: the interface's own
// address and subnet, boot URLs on this server, leases in the data dir.
func newDHCP(cfg Config, reg prometheus.Registerer, log *slog.Logger, onEvent func(dhcp.Event), shared *registry.SharedPool) (*dhcp.Server, error) {
	ifi, err := net.InterfaceByName(cfg.DHCP.Interface)
	if err != nil {
		return nil, fmt.Errorf("dhcp: interface %q: %w (list interfaces with `ip link`)", cfg.DHCP.Interface, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, fmt.Errorf("dhcp: interface %s: %w", ifi.Name, err)
	}
	var prefix netip.Prefix
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
			ones, _ := ipn.Mask.Size()
			ip, _ := netip.AddrFromSlice(ipn.IP.To4())
			prefix = netip.PrefixFrom(ip, ones)
			break
		}
	}
	if !prefix.IsValid() {
		return nil, fmt.Errorf("dhcp: interface %s has no IPv4 address; give it one (ip addr add 10.77.0.1/24 dev %s)", ifi.Name, ifi.Name)
	}
	base := cfg.HTTP.PublicURL
	if base == "" {
		_, port, _ := net.SplitHostPort(cfg.HTTP.Listen)
		base = "http://" + net.JoinHostPort(prefix.Addr().String(), port)
	}
	dcfg := dhcp.Config{
		Mode:      dhcp.Mode(cfg.DHCP.Mode),
		Interface: ifi.Name,
		ServerIP:  prefix.Addr(),
		Subnet:    prefix.Masked(),
		LeaseTime: cfg.DHCP.LeaseTime,
		Domain:    cfg.DHCP.Domain,
		Boot:      dhcp.BootConfig{IPXEScript: base + "/boot.ipxe", HTTPBase: base + "/ipxe/"},
	}
	dcfg.PoolStart, _ = netip.ParseAddr(cfg.DHCP.Pool.Start)
	dcfg.PoolEnd, _ = netip.ParseAddr(cfg.DHCP.Pool.End)
	dcfg.Router, _ = netip.ParseAddr(cfg.DHCP.Router)
	for _, d := range cfg.DHCP.DNS {
		a, _ := netip.ParseAddr(d)
		dcfg.DNS = append(dcfg.DNS, a)
	}
	var store dhcp.LeaseStore
	if dcfg.Mode == dhcp.ModeFull {
		fs, err := dhcp.OpenFileStore(filepath.Join(cfg.DataDir, "dhcp-leases.jsonl"))
		if err != nil {
			return nil, err
		}
		store = fs
	}
	return dhcp.New(dcfg, dhcp.Options{Store: store, Shared: shared, Log: log.With("component", "dhcp"), Metrics: reg, OnEvent: onEvent, ServerName: serverID(cfg)})
}

// dhcpReservations are the config's reservations (located in its file, or
// named by their flag) and the profiles' groups' ones.
func dhcpReservations(cfg Config, set *profiles.Set) []dhcp.Reservation {
	var out []dhcp.Reservation
	for _, mac := range slices.Sorted(maps.Keys(cfg.DHCP.Reservations)) { // checked by Config.Validate
		norm, _ := profiles.NormalizeMAC(mac)
		ip, _ := netip.ParseAddr(cfg.DHCP.Reservations[mac])
		at, ok := cfg.reservationAt[mac]
		if !ok {
			at = "--dhcp-reservation " + mac
		}
		out = append(out, dhcp.Reservation{MAC: norm, IP: ip, At: at})
	}
	for _, r := range set.Reservations() {
		out = append(out, dhcp.Reservation{MAC: r.MAC, IP: r.IP, At: r.At})
	}
	return out
}

// restoreInventory records every machine this server holds a bound lease
// for that the inventory lacks.
func restoreInventory(ctx context.Context, inv *registry.Registry, leases []dhcp.Lease, server string, log *slog.Logger) {
	var macs []string
	byMAC := map[string]dhcp.Lease{}
	for _, l := range leases {
		if l.State == dhcp.StateBound && l.MAC != "" && l.Server == server {
			macs = append(macs, l.MAC)
			byMAC[l.MAC] = l
		}
	}
	if len(macs) == 0 {
		return
	}
	for attempt := 0; ctx.Err() == nil; attempt++ {
		known, err := inv.NodesOf(ctx, macs)
		if err == nil {
			missing := map[string][]registry.Observation{}
			have := map[string]bool{}
			for _, n := range known {
				have[n.MAC] = true
			}
			for _, mac := range macs {
				if !have[mac] {
					l := byMAC[mac]
					missing[mac] = []registry.Observation{{MAC: mac, IP: l.IP.String(), State: registry.StateDiscovered,
						Event: registry.Event{Event: "dhcp.ack", Detail: l.IP.String() + " (restored from the lease file)"}}}
				}
			}
			if len(missing) > 0 {
				log.Info("restoring machines with leases missing from the inventory", "count", len(missing))
				err = inv.ObserveBatch(ctx, missing)
			}
			if err == nil {
				return
			}
		}
		log.Warn("restoring the inventory from the lease file failed; retrying", "error", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(min(attempt+1, 10)) * time.Second):
		}
	}
}

// dhcpObservation turns a DHCP exchange into a registry observation: a
// DISCOVER starts a boot over, so the node is "discovered" again.
func dhcpObservation(e dhcp.Event) registry.Observation {
	o := registry.Observation{
		MAC:         e.MAC,
		Arch:        e.Arch,
		Firmware:    e.Firmware,
		UUID:        e.UUID,
		VendorClass: e.VendorClass,
		UserClass:   e.UserClass,
		Event:       registry.Event{Time: e.Time, Event: "dhcp." + e.Type},
	}
	switch e.Type {
	case "discover":
		o.State = registry.StateDiscovered
	case "ack":
		o.IP = e.IP.String()
	}
	if e.IP.IsValid() {
		o.Event.Detail = e.IP.String()
	}
	if e.BootFile != "" {
		o.Event.Detail = strings.TrimSpace(o.Event.Detail + " boot " + e.BootFile)
	}
	return o
}

// serverID names this server in events and leases: the hostname and the
// HTTP address.
func serverID(cfg Config) string {
	host, _ := os.Hostname()
	if cfg.HTTP.PublicURL != "" {
		return host + " " + cfg.HTTP.PublicURL
	}
	return host + " " + cfg.HTTP.Listen
}

// bootObservation turns an HTTP boot event into a registry observation,
// moving the node along its states.
func bootObservation(e httpboot.Event) registry.Observation {
	o := registry.Observation{
		MAC:      e.MAC,
		IP:       e.IP,
		Arch:     e.Arch,
		Firmware: e.Firmware,
		UUID:     e.UUID,
		Group:    e.Group,
		Profile:  e.Profile,
		Event:    registry.Event{Time: e.Time, Event: e.Kind, Detail: e.Detail},
	}
	switch e.Kind {
	case "ipxe", "grub":
		o.State = registry.StateBooting
	case "ignition", "cloud-config":
		o.State = registry.StateProvisioned
	}
	return o
}

// ensureAdminToken creates <dataDir>/admin.token (mode 0600) when missing
// and returns the token.
func ensureAdminToken(dataDir string) (string, error) {
	path := filepath.Join(dataDir, "admin.token")
	data, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(data)), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("admin token: %w", err)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	token := hex.EncodeToString(b[:])
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	return token, nil
}
