// Package tftp is bootfleet's read-only TFTP server: the embedded iPXE
// binaries at the root (undionly.kpxe, ipxe.efi, snp.efi and the iPXE
// source offer), then the profiles' assets under assets/<path>, the same
// files HTTP serves under /assets/.
//
// Requests go through an ordered chain of Routes; the first route that
// matches a name answers it. The server is built on github.com/pin/tftp/v3
// and negotiates blksize (up to the interface MTU) and tsize. Write requests
// are refused, and so is every name that could reach outside the root (see
// ErrAccessViolation). The TFTP error code sent is always 1 (pin/tftp cannot
// send another); the message says "file not found", "access violation",
// "server busy" or "read-only server".
package tftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pin/tftp/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bootfleet/bootfleet/ipxe"
)

// Config configures a Server. The zero value is usable: it serves nothing
// on ":69".
type Config struct {
	// Listen is the UDP address, "host:port"; default ":69". Use
	// "127.0.0.1:0" in tests and read Addr.
	Listen string
	// Binaries are served at the root under their bare names, first in the
	// chain; usually ipxe.Embedded().
	Binaries ipxe.Binaries
	// Assets returns the tree served under assets/. It is called on every
	// request, so a hot reload only has to make it return the new tree
	// (for example func() fs.FS { return watcher.Current().Assets() }).
	// Nil, or a nil result, serves no assets.
	Assets func() fs.FS
	// Routes, when not nil, replaces the default chain (BinariesRoute of
	// Binaries, then FSRoute("assets", Assets)).
	Routes []Route
	// Log receives one line per transfer and per refused request: misses
	// at debug level, access violations at warn. Nil discards.
	Log *slog.Logger
	// Registerer, when not nil, gets the server's metrics:
	// bootfleet_tftp_transfers_total{result} (result: ok, refused, failed),
	// bootfleet_tftp_bytes_sent_total and
	// bootfleet_tftp_errors_total{reason} (reason: not_found,
	// access_violation, write_refused, busy, timeout, client_abort,
	// shutdown, io, bad_request).
	Registerer prometheus.Registerer
	// OnTransfer, when not nil, is told the outcome of every read and write
	// request once it ends: the client's address, the file name as the
	// client sent it, the bytes sent, and nil or the reason it failed
	// (errors.Is works with os.ErrNotExist, ErrAccessViolation,
	// ErrWriteRefused). It runs on the transfer's goroutine: keep it short.
	OnTransfer func(remote netip.AddrPort, file string, bytes int64, err error)
	// Timeout is how long the server waits for each acknowledgement before
	// sending again; default 2s (pin/tftp's own is 5s, tftpd-hpa's 1s).
	Timeout time.Duration
	// Retries is how many times a block is sent before giving up; default 5.
	Retries int
	// MaxTransfers caps the transfers in flight; further requests are
	// refused with "server busy", which PXE firmware takes as a failed
	// boot. Default 2048: a boot storm of a thousand PXE machines fits.
	MaxTransfers int
}

// Server is a read-only TFTP server. Create it with New and start it with
// Run.
type Server struct {
	cfg     Config
	routes  []Route
	log     *slog.Logger
	metrics metrics
	slots   chan struct{}

	started atomic.Bool
	ready   chan struct{}
	addr    net.Addr // set before ready is closed

	// stopping is closed when Run's context ends; transfers in flight then
	// fail at their next block instead of holding the shutdown.
	stopping chan struct{}
}

// New checks cfg, fills in defaults and registers the metrics.
func New(cfg Config) (*Server, error) {
	if cfg.Listen == "" {
		cfg.Listen = ":69"
	}
	if cfg.Timeout < 0 || cfg.Retries < 0 || cfg.MaxTransfers < 0 {
		return nil, fmt.Errorf("tftp: negative Timeout, Retries or MaxTransfers")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.Retries == 0 {
		cfg.Retries = 5
	}
	if cfg.MaxTransfers == 0 {
		cfg.MaxTransfers = 2048
	}
	s := &Server{
		cfg:      cfg,
		routes:   cfg.Routes,
		log:      cfg.Log,
		slots:    make(chan struct{}, cfg.MaxTransfers),
		ready:    make(chan struct{}),
		stopping: make(chan struct{}),
	}
	if s.routes == nil {
		s.routes = []Route{BinariesRoute(cfg.Binaries), FSRoute("assets", cfg.Assets)}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("tftp: %w", err)
	}
	s.metrics = m
	return s, nil
}

// Run listens on cfg.Listen and serves until ctx ends, then stops taking
// requests, ends the transfers in flight (they fail at their next block; one
// waiting on a silent client gives up after Timeout×Retries) and returns
// nil. It returns an error when it cannot listen. Run may be
// called only once.
func (s *Server) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("tftp: Run called twice")
	}
	conn, err := net.ListenPacket("udp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("tftp: %w", err)
	}
	s.addr = conn.LocalAddr()
	close(s.ready)
	s.log.Info("tftp listening", "addr", s.addr.String())

	ts := tftp.NewServer(s.handleRead, s.handleWrite)
	ts.SetTimeout(s.cfg.Timeout)
	ts.SetRetries(s.cfg.Retries)
	ts.SetHook(hook{s})

	served := make(chan error, 1)
	go func() { served <- ts.Serve(conn) }()
	select {
	case err := <-served:
		conn.Close()
		return fmt.Errorf("tftp: %w", err)
	case <-ctx.Done():
	}
	close(s.stopping)
	ts.Shutdown() // closes conn, waits for the transfers' goroutines
	<-served
	s.log.Info("tftp stopped", "addr", s.addr.String())
	return nil
}

// Ready is closed once Run listens; Addr is valid from then on.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr is the address Run listens on (with the real port when Listen asked
// for port 0), or nil before it listens.
func (s *Server) Addr() net.Addr {
	select {
	case <-s.ready:
		return s.addr
	default:
		return nil
	}
}

// Client-facing errors: pin/tftp sends err.Error() as the TFTP error
// message, so the details stay in our log.
var (
	errClientNotFound = errors.New("file not found")
	errClientAccess   = errors.New("access violation")
	errClientBusy     = errors.New("server busy")
	errClientReadOnly = errors.New("access violation: read-only server")
	errClientShutdown = errors.New("server shutting down")
	errClientIO       = errors.New("read error")
)

var (
	errBusy     = errors.New("too many transfers in flight")
	errShutdown = errors.New("server shutting down")
)

func (s *Server) handleRead(filename string, rf io.ReaderFrom) error {
	start := time.Now()
	var remote netip.AddrPort
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		ra := ot.RemoteAddr()
		remote = ra.AddrPort()
	}
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		return s.finish(remote, filename, 0, start, errBusy)
	}
	select {
	case <-s.stopping:
		return s.finish(remote, filename, 0, start, errShutdown)
	default:
	}
	name, err := cleanPath(filename)
	if err != nil {
		return s.finish(remote, filename, 0, start, err)
	}
	rc, size, err := route(s.routes, name)
	if err != nil {
		return s.finish(remote, filename, 0, start, err)
	}
	defer rc.Close()
	if ot, ok := rf.(tftp.OutgoingTransfer); ok && size >= 0 {
		ot.SetSize(size) // answers a tsize option
	}
	r := &transferReader{r: rc, stopping: s.stopping, sent: s.metrics.bytes}
	n, err := rf.ReadFrom(r)
	if err != nil && r.err != nil {
		err = r.err // the reader's own error says more than pin/tftp's
	}
	return s.finish(remote, filename, n, start, err)
}

func (s *Server) handleWrite(filename string, wt io.WriterTo) error {
	var remote netip.AddrPort
	if it, ok := wt.(tftp.IncomingTransfer); ok {
		ra := it.RemoteAddr()
		remote = ra.AddrPort()
	}
	return s.finish(remote, filename, 0, time.Now(), ErrWriteRefused)
}

// finish accounts for one request (metrics, log, OnTransfer) and returns the
// error for pin/tftp to send to the client, if it has not already.
func (s *Server) finish(remote netip.AddrPort, file string, n int64, start time.Time, err error) error {
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	if s.cfg.OnTransfer != nil {
		s.cfg.OnTransfer(remote, file, n, err)
	}
	attrs := []any{"remote", remote.String(), "file", file, "bytes", n, "duration", time.Since(start).Round(time.Microsecond)}
	if err == nil {
		s.metrics.transfers.WithLabelValues(resultOK).Inc()
		s.metrics.duration.Observe(time.Since(start).Seconds())
		s.log.Info("tftp sent", attrs...)
		return nil
	}
	reason, result, client := classify(err)
	s.metrics.transfers.WithLabelValues(result).Inc()
	s.metrics.errors.WithLabelValues(reason).Inc()
	attrs = append(attrs, "reason", reason, "err", err.Error())
	switch reason {
	case reasonNotFound, reasonClientAbort:
		s.log.Debug("tftp "+result, attrs...)
	case reasonAccess, reasonWrite, reasonBusy, reasonIO:
		s.log.Warn("tftp "+result, attrs...)
	default:
		s.log.Info("tftp "+result, attrs...)
	}
	return client
}

// Metric label values.
const (
	resultOK      = "ok"
	resultRefused = "refused" // nothing was sent
	resultFailed  = "failed"  // the transfer started and broke off

	reasonNotFound    = "not_found"
	reasonAccess      = "access_violation"
	reasonWrite       = "write_refused"
	reasonBusy        = "busy"
	reasonTimeout     = "timeout"
	reasonClientAbort = "client_abort"
	reasonShutdown    = "shutdown"
	reasonIO          = "io"
	reasonBadRequest  = "bad_request"
)

// classify maps a request's error to its metric labels and to the error
// pin/tftp sends the client (when the transfer has not sent one already).
func classify(err error) (reason, result string, client error) {
	var ne net.Error
	switch {
	case errors.Is(err, ErrWriteRefused):
		return reasonWrite, resultRefused, errClientReadOnly
	case errors.Is(err, ErrAccessViolation):
		return reasonAccess, resultRefused, errClientAccess
	case errors.Is(err, fs.ErrNotExist):
		return reasonNotFound, resultRefused, errClientNotFound
	case errors.Is(err, fs.ErrPermission):
		return reasonAccess, resultRefused, errClientAccess
	case errors.Is(err, errBusy):
		return reasonBusy, resultRefused, errClientBusy
	case errors.Is(err, errShutdown):
		return reasonShutdown, resultFailed, errClientShutdown
	case errors.As(err, &ne) && ne.Timeout():
		return reasonTimeout, resultFailed, err
	case strings.Contains(err.Error(), ": code="):
		// pin/tftp's "sending block N: code=C, error: M": the client sent
		// an ERROR, as UEFI firmware does after learning the tsize.
		return reasonClientAbort, resultFailed, err
	default:
		return reasonIO, resultFailed, errClientIO
	}
}

// transferReader counts the bytes read for the metrics and fails once the
// server is stopping.
type transferReader struct {
	r        io.Reader
	stopping <-chan struct{}
	sent     prometheus.Counter
	err      error
}

func (t *transferReader) Read(p []byte) (int, error) {
	select {
	case <-t.stopping:
		t.err = errShutdown
		return 0, t.err
	default:
	}
	n, err := t.r.Read(p)
	if n > 0 {
		t.sent.Add(float64(n))
	}
	if err != nil && err != io.EOF {
		t.err = err
	}
	return n, err
}

// hook sees pin/tftp's failures; the transfers' own are accounted by
// handleRead and handleWrite, so it only counts the packets that never
// became a transfer (malformed, or not a request).
type hook struct{ s *Server }

func (h hook) OnSuccess(tftp.TransferStats) {}

func (h hook) OnFailure(st tftp.TransferStats, err error) {
	if st.RemoteAddr != nil {
		return // a transfer's failure: handled by finish
	}
	select {
	case <-h.s.stopping:
		return // reads on the closed socket while shutting down
	default:
	}
	h.s.metrics.errors.WithLabelValues(reasonBadRequest).Inc()
	h.s.log.Debug("tftp bad request", "reason", reasonBadRequest, "err", err.Error())
}

type metrics struct {
	transfers *prometheus.CounterVec
	bytes     prometheus.Counter
	errors    *prometheus.CounterVec
	duration  prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (metrics, error) {
	m := metrics{
		transfers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bootfleet_tftp_transfers_total",
			Help: "TFTP requests handled, by result: ok, refused (nothing sent), failed (broke off).",
		}, []string{"result"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bootfleet_tftp_bytes_sent_total",
			Help: "File bytes sent over TFTP.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bootfleet_tftp_errors_total",
			Help: "TFTP requests that did not end in a complete transfer, by reason.",
		}, []string{"reason"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "bootfleet_tftp_transfer_duration_seconds",
			Help:    "Time from a read request to the last block acknowledged, for complete transfers.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
	}
	for _, r := range []string{resultOK, resultRefused, resultFailed} {
		m.transfers.WithLabelValues(r)
	}
	for _, r := range []string{reasonNotFound, reasonAccess, reasonWrite, reasonBusy, reasonTimeout, reasonClientAbort, reasonShutdown, reasonIO, reasonBadRequest} {
		m.errors.WithLabelValues(r)
	}
	if reg != nil {
		cs := []prometheus.Collector{m.transfers, m.bytes, m.errors, m.duration}
		for i, c := range cs {
			if err := reg.Register(c); err != nil {
				for _, done := range cs[:i] {
					reg.Unregister(done)
				}
				return metrics{}, fmt.Errorf("register metrics: %w", err)
			}
		}
	}
	return m, nil
}
