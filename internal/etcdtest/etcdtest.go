// Package etcdtest runs a real embedded etcd member for a test, on free
// loopback ports, stopped when the test ends.
package etcdtest

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/bootfleet/bootfleet/registry"
)

// FreeURL returns an http URL on a loopback port that was free a moment ago.
func FreeURL(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return "http://" + ln.Addr().String()
}

// Start starts an embedded etcd member in a temporary directory and
// returns its client endpoints.
func Start(t testing.TB) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := registry.StartEmbedded(ctx, registry.EmbeddedConfig{Dir: t.TempDir(), ListenClient: FreeURL(t), ListenPeer: FreeURL(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e.Endpoints()
}
