package registry

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// EmbeddedConfig configures the embedded etcd member.
type EmbeddedConfig struct {
	// Dir is where etcd keeps its data (created with mode 0700).
	Dir string
	// ListenClient and ListenPeer are URLs such as http://127.0.0.1:2379.
	// Two embedded members in one network namespace need distinct ports.
	ListenClient string
	ListenPeer   string
	// Name of the member; default "bootfleet".
	Name string
	Log  *slog.Logger
}

// Embedded is a running single-member etcd inside this process.
type Embedded struct {
	etcd      *embed.Etcd
	closeOnce sync.Once
}

// StartEmbedded starts an etcd member and waits until it serves clients.
func StartEmbedded(ctx context.Context, cfg EmbeddedConfig) (*Embedded, error) {
	if cfg.Name == "" {
		cfg.Name = "bootfleet"
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded etcd: data dir %s: %w", cfg.Dir, err)
	}
	client, err := url.Parse(cfg.ListenClient)
	if err != nil || client.Host == "" {
		return nil, fmt.Errorf("embedded etcd: listen_client %q: want a URL such as http://127.0.0.1:2379", cfg.ListenClient)
	}
	peer, err := url.Parse(cfg.ListenPeer)
	if err != nil || peer.Host == "" {
		return nil, fmt.Errorf("embedded etcd: listen_peer %q: want a URL such as http://127.0.0.1:2380", cfg.ListenPeer)
	}
	ec := embed.NewConfig()
	ec.Name = cfg.Name
	ec.Dir = filepath.Clean(cfg.Dir)
	ec.ListenClientUrls = []url.URL{*client}
	ec.AdvertiseClientUrls = []url.URL{*client}
	ec.ListenPeerUrls = []url.URL{*peer}
	ec.AdvertisePeerUrls = []url.URL{*peer}
	ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	// etcd logs through zap at a volume meant for etcd operators; bootfleet
	// reports what matters (start, failure) itself.
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	// Keep history bounded: the registry needs current state and watches,
	// not old revisions.
	ec.AutoCompactionMode = "periodic"
	ec.AutoCompactionRetention = "10m"

	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd in %s (client %s, peer %s): %w", cfg.Dir, cfg.ListenClient, cfg.ListenPeer, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd: %w", err)
	case <-ctx.Done():
		e.Close()
		return nil, fmt.Errorf("embedded etcd: %w", ctx.Err())
	case <-time.After(60 * time.Second):
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s did not become ready within 60s", cfg.Dir)
	}
	if cfg.Log != nil {
		cfg.Log.Info("embedded etcd ready", "dir", cfg.Dir, "client", cfg.ListenClient, "peer", cfg.ListenPeer)
	}
	return &Embedded{etcd: e}, nil
}

// Endpoints returns the client URLs to reach the member.
func (e *Embedded) Endpoints() []string {
	var out []string
	for _, l := range e.etcd.Clients {
		out = append(out, "http://"+l.Addr().String())
	}
	return out
}

// Err reports a fatal error of the running member.
func (e *Embedded) Err() <-chan error { return e.etcd.Err() }

// Close stops the member; calling it again does nothing.
func (e *Embedded) Close() {
	e.closeOnce.Do(e.etcd.Close)
}
