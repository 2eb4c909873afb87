package tftp_test

import (
	"context"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bootfleet/bootfleet/ipxe"
	"github.com/bootfleet/bootfleet/tftp"
)

// How cmd/bootfleet wires the server: the embedded iPXE binaries, the
// current profiles snapshot's assets (swapped on hot reload), the shared
// metrics registry, and the registry's timeline hook.
func ExampleNew() {
	log := slog.Default()
	reg := prometheus.NewRegistry()
	assets := os.DirFS("profiles/assets") // in cmd: func() fs.FS { return watcher.Current().Assets() }

	srv, err := tftp.New(tftp.Config{
		Listen:     ":69",
		Binaries:   ipxe.Embedded(),
		Assets:     func() fs.FS { return assets },
		Log:        log.With("component", "tftp"),
		Registerer: reg,
		OnTransfer: func(remote netip.AddrPort, file string, bytes int64, err error) {
			// registry: record a "tftp" event on the node's timeline
			// (the node found by remote's IP from its DHCP lease).
		},
	})
	if err != nil {
		log.Error("tftp", "err", err)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := srv.Run(ctx); err != nil { // returns nil once ctx ends
		log.Error("tftp", "err", err)
	}
}
