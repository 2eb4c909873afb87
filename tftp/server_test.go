package tftp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	pintftp "github.com/pin/tftp/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bootfleet/bootfleet/ipxe"
)

// transfer is one OnTransfer call.
type transfer struct {
	remote netip.AddrPort
	file   string
	bytes  int64
	err    error
}

// testServer is a Server on 127.0.0.1 with its own registry and a record
// of OnTransfer calls.
type testServer struct {
	*Server
	addr string // host:port
	port string
	reg  *prometheus.Registry

	mu        sync.Mutex
	transfers []transfer
}

func (ts *testServer) recorded() []transfer {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]transfer(nil), ts.transfers...)
}

// waitTransfers waits until n transfers have been reported (OnTransfer runs
// after the last packet went out, so a client may finish first).
func (ts *testServer) waitTransfers(t *testing.T, n int) []transfer {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := ts.recorded()
		if len(got) >= n || time.Now().After(deadline) {
			if len(got) < n {
				t.Fatalf("%d transfers reported, want %d", len(got), n)
			}
			return got
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (ts *testServer) counter(t *testing.T, name, label string) float64 {
	t.Helper()
	var c prometheus.Collector
	switch name {
	case "transfers":
		c = ts.metrics.transfers.WithLabelValues(label)
	case "errors":
		c = ts.metrics.errors.WithLabelValues(label)
	case "bytes":
		c = ts.metrics.bytes
	default:
		t.Fatalf("no metric %s", name)
	}
	return testutil.ToFloat64(c)
}

func startServer(t *testing.T, cfg Config) *testServer {
	t.Helper()
	ts := &testServer{reg: prometheus.NewRegistry()}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	cfg.Registerer = ts.reg
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cfg.OnTransfer = func(remote netip.AddrPort, file string, n int64, err error) {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		ts.transfers = append(ts.transfers, transfer{remote, file, n, err})
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts.Server = s
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	})
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("server not listening after 5s")
	}
	ts.addr = s.Addr().String()
	_, ts.port, _ = net.SplitHostPort(ts.addr)
	return ts
}

// testWriter sends the server's log to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// needTool returns the path of a client program the interop tests drive.
// A missing tool fails the test (CI installs them: Debian packages curl,
// atftp, tftp-hpa); with -short it skips instead.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if testing.Short() {
			t.Skipf("%s not installed (Debian package %s); skipped with -short", name, pkg)
		}
		t.Fatalf("%s not installed: apt-get install %s (CI installs it)", name, pkg)
	}
	return p
}

func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

func embeddedBytes(t *testing.T, name string) []byte {
	t.Helper()
	r, _, _, err := ipxe.Embedded().Open(name)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sameFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(want) {
		t.Fatalf("%s: %d bytes, sha256 %x; want %d bytes, sha256 %x", path, len(got), sha256.Sum256(got), len(want), sha256.Sum256(want))
	}
}

// assetsDir is a profiles-like assets tree on disk: random files of awkward
// sizes, and a symlink out to /etc.
func assetsDir(t *testing.T) (string, map[string][]byte) {
	t.Helper()
	dir := t.TempDir()
	files := map[string][]byte{
		"flatcar/vmlinuz":    randomBytes(300_001),
		"flatcar/initrd.img": randomBytes(512 * 8), // ends on a block boundary
		"tiny":               []byte("x"),
		"empty":              {},
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/etc", filepath.Join(dir, "etc")); err != nil {
		t.Fatal(err)
	}
	return dir, files
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	x := uint32(n) | 1
	for i := range b { // xorshift: random enough, reproducible
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

func fullServer(t *testing.T) (*testServer, map[string][]byte) {
	dir, files := assetsDir(t)
	ts := startServer(t, Config{Binaries: ipxe.Embedded(), Assets: func() fs.FS { return os.DirFS(dir) }})
	return ts, files
}

func TestCurlBinaries(t *testing.T) {
	curl := needTool(t, "curl", "curl")
	ts, _ := fullServer(t)
	out := t.TempDir()
	n := 0
	for _, name := range []string{ipxe.IPXEEFI, ipxe.UndionlyKPXE, ipxe.SNPEFI} {
		want := embeddedBytes(t, name)
		for _, opts := range [][]string{{"--tftp-blksize", "512"}, {"--tftp-blksize", "1468"}, {"--tftp-no-options"}} {
			t.Run(name+strings.Join(opts, ""), func(t *testing.T) {
				dst := filepath.Join(out, fmt.Sprintf("%s-%d", name, n))
				n++
				args := append([]string{"-sS", "--max-time", "30", "-o", dst}, opts...)
				if o, err := run(t, curl, append(args, "tftp://"+ts.addr+"/"+name)...); err != nil {
					t.Fatalf("curl: %v\n%s", err, o)
				}
				sameFile(t, dst, want)
			})
		}
	}
	got := ts.waitTransfers(t, 9)
	var sent int64
	for _, tr := range got {
		if tr.err != nil || !tr.remote.Addr().IsLoopback() {
			t.Errorf("transfer %+v", tr)
		}
		sent += tr.bytes
	}
	if ok := ts.counter(t, "transfers", "ok"); ok != 9 {
		t.Errorf("transfers_total{result=ok} = %v, want 9", ok)
	}
	if n := histogramCount(t, ts.reg, "bootfleet_tftp_transfer_duration_seconds"); n != 9 {
		t.Errorf("transfer_duration_seconds counted %d transfers, want 9", n)
	}
	if b := ts.counter(t, "bytes", ""); b != float64(sent) {
		t.Errorf("bytes_sent_total = %v, OnTransfer saw %d", b, sent)
	}
}

func TestCurlAssets(t *testing.T) {
	curl := needTool(t, "curl", "curl")
	ts, files := fullServer(t)
	out := t.TempDir()
	i := 0
	for name, want := range files {
		for _, bs := range []string{"512", "1468"} {
			dst := filepath.Join(out, fmt.Sprint(i))
			i++
			if o, err := run(t, curl, "-sS", "--max-time", "30", "--tftp-blksize", bs, "-o", dst, "tftp://"+ts.addr+"/assets/"+name); err != nil {
				t.Fatalf("curl assets/%s blksize %s: %v\n%s", name, bs, err, o)
			}
			sameFile(t, dst, want)
		}
	}
	// A client that asks for /assets/... (leading slash) gets the same file.
	dst := filepath.Join(out, "slash")
	if o, err := run(t, curl, "-sS", "--max-time", "30", "-o", dst, "tftp://"+ts.addr+"//assets/tiny"); err != nil {
		t.Fatalf("curl //assets/tiny: %v\n%s", err, o)
	}
	sameFile(t, dst, files["tiny"])
}

func TestAtftpGet(t *testing.T) {
	atftp := needTool(t, "atftp", "atftp")
	ts, files := fullServer(t)
	out := t.TempDir()
	cases := []struct {
		remote string
		want   []byte
		opts   []string
	}{
		{ipxe.IPXEEFI, embeddedBytes(t, ipxe.IPXEEFI), nil},
		{ipxe.UndionlyKPXE, embeddedBytes(t, ipxe.UndionlyKPXE), []string{"--option", "blksize 1468", "--option", "tsize 0"}},
		{"assets/flatcar/vmlinuz", files["flatcar/vmlinuz"], []string{"--option", "blksize 1024"}},
		{"assets/flatcar/initrd.img", files["flatcar/initrd.img"], nil},
		{"/" + ipxe.SourceOfferName, []byte(ipxe.Embedded().SourceOffer()), nil},
	}
	for i, c := range cases {
		dst := filepath.Join(out, fmt.Sprint(i))
		args := append(append([]string{}, c.opts...), "-g", "-r", c.remote, "-l", dst, "127.0.0.1", ts.port)
		if o, err := run(t, atftp, args...); err != nil {
			t.Fatalf("atftp get %s: %v\n%s", c.remote, err, o)
		}
		sameFile(t, dst, c.want)
	}
	// A miss is an error for atftp too.
	dst := filepath.Join(out, "miss")
	if o, err := run(t, atftp, "-g", "-r", "assets/nope", "-l", dst, "127.0.0.1", ts.port); err == nil {
		t.Fatalf("atftp get of a missing file succeeded:\n%s", o)
	} else if !strings.Contains(o, "file not found") {
		t.Errorf("atftp output does not say file not found:\n%s", o)
	}
}

func TestTFTPHPAGet(t *testing.T) {
	tftpc := needTool(t, "tftp", "tftp-hpa")
	ts, files := fullServer(t)
	out := t.TempDir()
	dst := filepath.Join(out, "undionly")
	o, err := run(t, tftpc, "127.0.0.1", ts.port, "-m", "binary", "-c", "get", ipxe.UndionlyKPXE, dst)
	if err != nil || strings.Contains(o, "Error") {
		t.Fatalf("tftp get: %v\n%s", err, o)
	}
	sameFile(t, dst, embeddedBytes(t, ipxe.UndionlyKPXE))
	dst = filepath.Join(out, "tiny")
	if o, err := run(t, tftpc, "127.0.0.1", ts.port, "-m", "binary", "-c", "get", "assets/tiny", dst); err != nil || strings.Contains(o, "Error") {
		t.Fatalf("tftp get: %v\n%s", err, o)
	}
	sameFile(t, dst, files["tiny"])
	// tftp-hpa exits 0 on server errors; it prints them.
	o, _ = run(t, tftpc, "127.0.0.1", ts.port, "-m", "binary", "-c", "get", "../etc/passwd", filepath.Join(out, "passwd"))
	if !strings.Contains(o, "access violation") {
		t.Errorf("tftp get ../etc/passwd: want an access violation, got:\n%s", o)
	}
}

// Names that reach outside the root are refused, by every client, and the
// refusals are counted.
func TestTraversal(t *testing.T) {
	curl := needTool(t, "curl", "curl")
	atftp := needTool(t, "atftp", "atftp")
	ts, _ := fullServer(t)
	out := t.TempDir()
	curlCases := map[string]string{ // URL path → reason
		"/../etc/passwd":               reasonAccess,
		"/assets/../../etc/passwd":     reasonAccess,
		"//etc/passwd":                 reasonNotFound, // absolute: looked up under the root
		"/assets/etc/passwd":           reasonAccess,   // symlink to /etc
		"/assets/etc":                  reasonAccess,
		`/assets\..\..\etc\passwd`:     reasonAccess,
		"/assets/%2e%2e/%2e%2e/passwd": reasonAccess,
	}
	for p, reason := range curlCases {
		t.Run("curl"+p, func(t *testing.T) {
			before := ts.counter(t, "errors", reason)
			dst := filepath.Join(out, "curl")
			os.Remove(dst)
			o, err := run(t, curl, "-sS", "--path-as-is", "--max-time", "30", "-o", dst, "tftp://"+ts.addr+p)
			if err == nil {
				t.Fatalf("curl %s succeeded:\n%s", p, o)
			}
			if b, _ := os.ReadFile(dst); len(b) > 0 {
				t.Fatalf("curl %s wrote %d bytes", p, len(b))
			}
			if after := ts.counter(t, "errors", reason); after != before+1 {
				t.Errorf("errors_total{reason=%s} went %v → %v", reason, before, after)
			}
		})
	}
	for _, p := range []string{"../etc/passwd", "/../../etc/shadow", "assets/etc/passwd", "assets/../../../etc/passwd"} {
		t.Run("atftp "+p, func(t *testing.T) {
			dst := filepath.Join(out, "atftp")
			o, err := run(t, atftp, "-g", "-r", p, "-l", dst, "127.0.0.1", ts.port)
			if err == nil {
				t.Fatalf("atftp get %s succeeded:\n%s", p, o)
			}
			if !strings.Contains(o, "access violation") {
				t.Errorf("atftp get %s: want access violation, got:\n%s", p, o)
			}
			if b, _ := os.ReadFile(dst); len(b) > 0 {
				t.Fatalf("atftp %s wrote %d bytes", p, len(b))
			}
		})
	}
	for _, tr := range ts.recorded() {
		if tr.err == nil {
			t.Errorf("transfer of %q succeeded", tr.file)
		} else if !errors.Is(tr.err, ErrAccessViolation) && !errors.Is(tr.err, fs.ErrNotExist) {
			t.Errorf("transfer of %q: error %v is neither an access violation nor not-found", tr.file, tr.err)
		}
	}
	if ok := ts.counter(t, "transfers", "ok"); ok != 0 {
		t.Errorf("transfers_total{result=ok} = %v", ok)
	}
}

// Every way to write is refused and nothing lands anywhere.
func TestWriteRefused(t *testing.T) {
	atftp := needTool(t, "atftp", "atftp")
	tftpc := needTool(t, "tftp", "tftp-hpa")
	dir, _ := assetsDir(t)
	ts := startServer(t, Config{Binaries: ipxe.Embedded(), Assets: func() fs.FS { return os.DirFS(dir) }})
	src := filepath.Join(t.TempDir(), "upload")
	if err := os.WriteFile(src, []byte("should never arrive"), 0o644); err != nil {
		t.Fatal(err)
	}
	o, err := run(t, atftp, "-p", "-l", src, "-r", "assets/uploaded", "127.0.0.1", ts.port)
	if err == nil {
		t.Fatalf("atftp put succeeded:\n%s", o)
	}
	if !strings.Contains(o, "read-only") {
		t.Errorf("atftp put: want a read-only error, got:\n%s", o)
	}
	o, _ = run(t, tftpc, "127.0.0.1", ts.port, "-m", "binary", "-c", "put", src, "ipxe.efi")
	if !strings.Contains(o, "read-only") {
		t.Errorf("tftp put: want a read-only error, got:\n%s", o)
	}
	c, err := pintftp.NewClient(ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetTimeout(2 * time.Second)
	if rf, err := c.Send("assets/uploaded", "octet"); err == nil {
		if _, err := rf.ReadFrom(strings.NewReader("x")); err == nil {
			t.Error("pin/tftp client upload succeeded")
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "uploaded")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("an upload landed in the assets: %v", err)
	}
	got := ts.waitTransfers(t, 3)
	for _, tr := range got {
		if !errors.Is(tr.err, ErrWriteRefused) {
			t.Errorf("write of %q reported %v, want ErrWriteRefused", tr.file, tr.err)
		}
	}
	if n := ts.counter(t, "errors", reasonWrite); n != 3 {
		t.Errorf("errors_total{reason=write_refused} = %v, want 3", n)
	}
}

func TestConcurrentCurl(t *testing.T) {
	curl := needTool(t, "curl", "curl")
	ts, _ := fullServer(t)
	want := embeddedBytes(t, ipxe.IPXEEFI)
	out := t.TempDir()
	const clients = 20
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Go(func() {
			dst := filepath.Join(out, fmt.Sprint(i))
			bs := []string{"512", "1468"}[i%2]
			if o, err := run(t, curl, "-sS", "--max-time", "60", "--tftp-blksize", bs, "-o", dst, "tftp://"+ts.addr+"/ipxe.efi"); err != nil {
				errs <- fmt.Errorf("client %d: %v\n%s", i, err, o)
				return
			}
			got, err := os.ReadFile(dst)
			if err != nil || !bytes.Equal(got, want) {
				errs <- fmt.Errorf("client %d: %d bytes differ from ipxe.efi (%v)", i, len(got), err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	ts.waitTransfers(t, clients)
	if ok := ts.counter(t, "transfers", "ok"); ok != clients {
		t.Errorf("transfers_total{result=ok} = %v, want %d", ok, clients)
	}
	if b := ts.counter(t, "bytes", ""); b != float64(clients*len(want)) {
		t.Errorf("bytes_sent_total = %v, want %d", b, clients*len(want))
	}
}

// Client-side view of errors, with pin/tftp's own client: the TFTP error
// message names the problem and does not leak server paths.
func TestErrorMessages(t *testing.T) {
	ts, _ := fullServer(t)
	c, err := pintftp.NewClient(ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetTimeout(2 * time.Second)
	for name, want := range map[string]string{
		"assets/nope":          "code: 1, message: file not found",
		"nope.efi":             "code: 1, message: file not found",
		"../etc/passwd":        "code: 1, message: access violation",
		"assets/etc/passwd":    "code: 1, message: access violation",
		"assets/flatcar":       "code: 1, message: file not found",
		`assets\flatcar\tiny`:  "code: 1, message: access violation",
		"assets/tiny/../empty": "code: 1, message: access violation",
	} {
		_, err := c.Receive(name, "octet")
		// pin/tftp's client keeps the message's terminating NUL.
		if err == nil || strings.TrimRight(err.Error(), "\x00") != want {
			t.Errorf("Receive(%q) error = %v, want %q", name, err, want)
		}
	}
	// The server's own record keeps the detail.
	for _, tr := range ts.waitTransfers(t, 7) {
		if tr.file == "assets/etc/passwd" && !strings.Contains(tr.err.Error(), "symlink etc -> /etc") {
			t.Errorf("OnTransfer error for %s = %v, want the symlink named", tr.file, tr.err)
		}
	}
}

// A hot reload swaps the assets under a running server.
func TestAssetsSwap(t *testing.T) {
	one, two := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(one, "f"), []byte("one"), 0o644)
	os.WriteFile(filepath.Join(two, "f"), []byte("two"), 0o644)
	var mu sync.Mutex
	current := os.DirFS(one)
	ts := startServer(t, Config{Assets: func() fs.FS { mu.Lock(); defer mu.Unlock(); return current }})
	get := func() string {
		c, _ := pintftp.NewClient(ts.addr)
		wt, err := c.Receive("assets/f", "octet")
		if err != nil {
			return err.Error()
		}
		var b bytes.Buffer
		wt.WriteTo(&b)
		return b.String()
	}
	if got := get(); got != "one" {
		t.Fatalf("before swap: %q", got)
	}
	mu.Lock()
	current = os.DirFS(two)
	mu.Unlock()
	if got := get(); got != "two" {
		t.Fatalf("after swap: %q", got)
	}
	// No binaries configured: none served.
	c, _ := pintftp.NewClient(ts.addr)
	if _, err := c.Receive("ipxe.efi", "octet"); err == nil {
		t.Error("ipxe.efi served by a server without binaries")
	}
}

// blockingRoute serves one file whose reader blocks until release is
// closed.
type blockingRoute struct {
	started chan struct{}
	release chan struct{}
}

func (r blockingRoute) Match(name string) bool { return name == "slow" }
func (r blockingRoute) Open(string) (io.ReadCloser, int64, error) {
	return io.NopCloser(&blockingReader{r: r, data: bytes.NewReader(make([]byte, 100_000))}), 100_000, nil
}

type blockingReader struct {
	r    blockingRoute
	data io.Reader
	once sync.Once
}

func (b *blockingReader) Read(p []byte) (int, error) {
	n, err := b.data.Read(p)
	b.once.Do(func() { close(b.r.started) })
	<-b.r.release
	return n, err
}

func TestBusy(t *testing.T) {
	br := blockingRoute{started: make(chan struct{}), release: make(chan struct{})}
	ts := startServer(t, Config{MaxTransfers: 1, Routes: []Route{br, BinariesRoute(ipxe.Embedded())}})
	c, _ := pintftp.NewClient(ts.addr)
	c.SetTimeout(5 * time.Second)
	slow := make(chan error, 1)
	go func() {
		wt, err := c.Receive("slow", "octet")
		if err == nil {
			_, err = wt.WriteTo(io.Discard)
		}
		slow <- err
	}()
	<-br.started
	if _, err := c.Receive(ipxe.UndionlyKPXE, "octet"); err == nil || !strings.Contains(err.Error(), "server busy") {
		t.Fatalf("second transfer with MaxTransfers 1: %v, want server busy", err)
	}
	close(br.release)
	if err := <-slow; err != nil {
		t.Fatalf("slow transfer: %v", err)
	}
	ts.waitTransfers(t, 2)
	wt, err := c.Receive(ipxe.UndionlyKPXE, "octet")
	if err != nil {
		t.Fatalf("after the slot freed: %v", err)
	}
	wt.WriteTo(io.Discard)
	if n := ts.counter(t, "errors", reasonBusy); n != 1 {
		t.Errorf("errors_total{reason=busy} = %v", n)
	}
}

// Garbage on the port is counted and does not stop the server.
func TestBadPackets(t *testing.T) {
	ts := startServer(t, Config{Binaries: ipxe.Embedded()})
	conn, err := net.Dial("udp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, p := range [][]byte{
		{},
		{0xff},
		{0, 1},          // RRQ without a name
		{0, 1, 'a'},     // no NUL
		{0, 4, 0, 1},    // an ACK to the listening port
		{0, 9, 1, 2, 3}, // unknown opcode
		append([]byte{0, 1}, bytes.Repeat([]byte{'a'}, 600)...), // longer than the buffer
	} {
		conn.Write(p)
	}
	deadline := time.Now().Add(5 * time.Second)
	for ts.counter(t, "errors", reasonBadRequest) < 5 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := ts.counter(t, "errors", reasonBadRequest); n < 5 {
		t.Errorf("errors_total{reason=bad_request} = %v, want at least 5", n)
	}
	c, _ := pintftp.NewClient(ts.addr)
	wt, err := c.Receive(ipxe.IPXEEFI, "octet")
	if err != nil {
		t.Fatalf("after garbage: %v", err)
	}
	var b bytes.Buffer
	wt.WriteTo(&b)
	if !bytes.Equal(b.Bytes(), embeddedBytes(t, ipxe.IPXEEFI)) {
		t.Error("ipxe.efi differs after garbage")
	}
}

// Cancelling Run's context ends a transfer in flight at once.
func TestShutdownDuringTransfer(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "big"), randomBytes(20<<20), 0o644)
	s, err := New(Config{Listen: "127.0.0.1:0", Assets: func() fs.FS { return os.DirFS(dir) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	<-s.Ready()
	c, _ := pintftp.NewClient(s.Addr().String())
	c.SetBlockSize(512)
	wt, err := c.Receive("assets/big", "octet")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := wt.WriteTo(io.Discard)
		got <- err
	}()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run still running 10s after cancel")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("shutdown took %v", d)
	}
	if err := <-got; err == nil || !strings.Contains(err.Error(), "shutting down") {
		t.Errorf("client: %v, want the server's shutdown error", err)
	}
	if err := s.Run(context.Background()); err == nil {
		t.Error("second Run succeeded")
	}
}

// Listen ":0" (all addresses, IPv4 and IPv6) serves IPv4 clients too.
func TestDualStack(t *testing.T) {
	ts := startServer(t, Config{Listen: ":0", Binaries: ipxe.Embedded()})
	for _, host := range []string{"127.0.0.1", "[::1]"} {
		c, err := pintftp.NewClient(host + ":" + ts.port)
		if err != nil {
			t.Fatal(err)
		}
		c.SetBlockSize(1468)
		wt, err := c.Receive(ipxe.UndionlyKPXE, "octet")
		if err != nil {
			if host == "[::1]" && strings.Contains(err.Error(), "network is unreachable") {
				continue // no IPv6 on this machine
			}
			t.Fatalf("%s: %v", host, err)
		}
		var b bytes.Buffer
		wt.WriteTo(&b)
		if !bytes.Equal(b.Bytes(), embeddedBytes(t, ipxe.UndionlyKPXE)) {
			t.Errorf("%s: undionly.kpxe differs", host)
		}
	}
}

func TestNew(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := New(Config{Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Registerer: reg}); err == nil {
		t.Error("two servers registered the same metrics on one registry")
	}
	if _, err := New(Config{Timeout: -1}); err == nil {
		t.Error("negative timeout accepted")
	}
	s, err := New(Config{Listen: "127.0.0.1:99999"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background()); err == nil {
		t.Error("Run on port 99999 succeeded")
	}
	if s.Addr() != nil {
		t.Error("Addr before listening is not nil")
	}
	// Metric names follow the repository's convention and lint clean.
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric lint: %s: %s", p.Metric, p.Text)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "bootfleet_tftp_") {
			t.Errorf("metric %s does not start with bootfleet_tftp_", mf.GetName())
		}
	}
	if len(mfs) != 4 {
		t.Errorf("%d metric families, want 4", len(mfs))
	}
}

// blksize and tsize are negotiated: curl -v prints the server's OACK.
func TestOptionsNegotiated(t *testing.T) {
	curl := needTool(t, "curl", "curl")
	ts, files := fullServer(t)
	for _, c := range []struct {
		path string
		size int
	}{
		{"/ipxe.efi", len(embeddedBytes(t, ipxe.IPXEEFI))},
		{"/assets/flatcar/vmlinuz", len(files["flatcar/vmlinuz"])},
	} {
		for _, bs := range []string{"512", "1468", "8192"} {
			var o string
			// pin/tftp answers blksize 512 when its lookup of the interface
			// MTU fails, which happens now and then while other tests
			// create and delete interfaces: ask again then, a few times.
			for try := 0; try < 3; try++ {
				var err error
				o, err = run(t, curl, "-v", "--max-time", "30", "--tftp-blksize", bs, "-o", os.DevNull, "tftp://"+ts.addr+c.path)
				if err != nil {
					t.Fatalf("curl %s: %v\n%s", c.path, err, o)
				}
				if bs == "512" || !strings.Contains(o, "blksize parsed from OACK (512)") {
					break
				}
			}
			for _, want := range []string{
				fmt.Sprintf("tsize parsed from OACK (%d)", c.size),
				fmt.Sprintf("blksize parsed from OACK (%s)", bs),
			} {
				if !strings.Contains(o, want) {
					t.Errorf("curl %s blksize %s: no %q in:\n%s", c.path, bs, want, o)
				}
			}
		}
	}
}

// UEFI firmware asks for the size first: RRQ with tsize, then an ERROR in
// answer to the OACK, then the real RRQ. The abort is counted as the
// client's, not as a server fault.
func TestTsizeProbeAbort(t *testing.T) {
	ts := startServer(t, Config{Binaries: ipxe.Embedded()})
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	server, err := net.ResolveUDPAddr("udp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	rrq := []byte("\x00\x01ipxe.efi\x00octet\x00tsize\x000\x00blksize\x001468\x00")
	if _, err := conn.WriteToUDP(rrq, server); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, from, err := conn.ReadFromUDP(buf)
	if err != nil {
		t.Fatal(err)
	}
	oack := string(buf[:n])
	size := len(embeddedBytes(t, ipxe.IPXEEFI))
	// blksize is 1468, or 512 when pin/tftp's lookup of the interface MTU
	// fails (it does, now and then, while other tests create and delete
	// interfaces); what this test is about is the tsize probe.
	if !strings.HasPrefix(oack, "\x00\x06") || !strings.Contains(oack, fmt.Sprintf("tsize\x00%d\x00", size)) ||
		!(strings.Contains(oack, "blksize\x001468\x00") || strings.Contains(oack, "blksize\x00512\x00")) {
		t.Fatalf("answer to RRQ with tsize is %q, want an OACK with tsize %d and blksize 1468 (or 512)", oack, size)
	}
	if _, err := conn.WriteToUDP([]byte("\x00\x05\x00\x08tsize probe done\x00"), from); err != nil {
		t.Fatal(err)
	}
	got := ts.waitTransfers(t, 1)
	if got[0].err == nil || got[0].bytes != 0 {
		t.Errorf("probe reported as %+v", got[0])
	}
	if n := ts.counter(t, "errors", reasonClientAbort); n != 1 {
		t.Errorf("errors_total{reason=client_abort} = %v, want 1", n)
	}
	if n := ts.counter(t, "transfers", resultFailed); n != 1 {
		t.Errorf("transfers_total{result=failed} = %v, want 1", n)
	}
}

// histogramCount is the number of observations of a histogram without labels.
func histogramCount(t *testing.T, g prometheus.Gatherer, name string) uint64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	t.Fatalf("no histogram %s", name)
	return 0
}
