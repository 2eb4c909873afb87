// Command chatapp serves the load tests' web app (load/chatapp) on a
// loopback address for the load benchmark, prints its base URL, and on
// SIGTERM or SIGINT prints what the server counted.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/bootfleet/bootfleet/load/chatapp"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to serve on")
	flag.Parse()
	if err := run(*listen); err != nil {
		slog.Error("chatapp", "error", err)
		os.Exit(1)
	}
}

func run(listen string) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("listen %q: %w", listen, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("listen %q: only loopback addresses", listen)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	var c chatapp.Counters
	srv := &http.Server{Handler: chatapp.Handler(&c, 0)}
	fmt.Printf("http://%s\n", ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	fmt.Fprintf(os.Stderr, "chatapp: pages %d images %d broken %d websockets %d hellos %d messages sent %d\n",
		c.Pages.Load(), c.Images.Load(), c.Broken.Load(), c.WSOpened.Load(), c.Hellos.Load(), c.WSSent.Load())
	return nil
}
