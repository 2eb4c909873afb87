package httpboot

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bootfleet/bootfleet/examples"
	"github.com/bootfleet/bootfleet/ignition"
	"github.com/bootfleet/bootfleet/ipxe"
	"github.com/bootfleet/bootfleet/profiles"
)

var update = flag.Bool("update", false, "rewrite golden files")

const public = "http://10.77.0.1:8080"

type fixture struct {
	srv    *Server
	ts     *httptest.Server
	reg    *prometheus.Registry
	mu     sync.Mutex
	events []Event
}

func (f *fixture) Events() []Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Event(nil), f.events...)
}

func newFixture(t *testing.T, fsys fstest.MapFS, renderer func(*profiles.Set) Renderer, cfg Config) *fixture {
	t.Helper()
	var set *profiles.Set
	var err error
	if fsys == nil {
		set, err = profiles.Load(examples.Lab(), "examples/lab")
	} else {
		set, err = profiles.Load(fsys, "t")
	}
	if err != nil {
		t.Fatal(err)
	}
	var r Renderer
	if renderer != nil {
		r = renderer(set)
	} else {
		ir, err := ignition.New(set, ignition.Options{})
		if err != nil {
			t.Fatal(err)
		}
		r = ir
	}
	f := &fixture{reg: prometheus.NewRegistry()}
	cfg.Metrics = f.reg
	cfg.OnEvent = func(e Event) { f.mu.Lock(); f.events = append(f.events, e); f.mu.Unlock() }
	cfg.Binaries = ipxe.Embedded()
	f.srv, err = New(cfg, Snapshot{Set: set, Renderer: r})
	if err != nil {
		t.Fatal(err)
	}
	f.ts = httptest.NewServer(f.srv.Handler())
	t.Cleanup(f.ts.Close)
	return f
}

func fetch(t *testing.T, url string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		os.WriteFile(path, []byte(got), 0o644)
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update creates it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs (go test -update to accept):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// Whole scripts for examples/lab, compared with golden files.
func TestScriptsGolden(t *testing.T) {
	f := newFixture(t, nil, nil, Config{PublicURL: public})
	for _, tc := range []struct{ name, path string }{
		{"boot.ipxe", "/boot.ipxe"},
		{"lab-loadgen.ipxe", "/ipxe?mac=52-54-00-AA-00-01&arch=x86_64&firmware=bios"},
		{"lab-default-uefi.ipxe", "/ipxe?mac=525400aa0099&arch=x86_64&firmware=efi"},
		{"lab-arm64.ipxe", "/ipxe?mac=52:54:00:aa:00:98&arch=arm64"},
		{"lab-loadgen.grub", "/grub.cfg?mac=52:54:00:aa:00:01"},
		{"lab-loadgen.metadata", "/metadata?mac=52:54:00:aa:00:01"},
		{"lab-loadgen.ign.json", "/ignition?mac=52:54:00:aa:00:01"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := fetch(t, f.ts.URL+tc.path)
			if resp.StatusCode != 200 {
				t.Fatalf("%d: %s", resp.StatusCode, body)
			}
			if strings.HasSuffix(tc.name, ".ign.json") {
				if err := ignition.Validate([]byte(body)); err != nil {
					t.Fatalf("served Ignition does not parse: %v", err)
				}
			}
			golden(t, tc.name, body)
		})
	}
}

func TestLocalDiskAndCloudConfig(t *testing.T) {
	f := newFixture(t, fstest.MapFS{
		"groups/disk.yaml":    {Data: []byte("name: disk\nprofile: disk\nselector: {mac: \"52:54:00:00:00:01\"}\n")},
		"groups/cloud.yaml":   {Data: []byte("name: cloud\nprofile: cloud\n")},
		"profiles/disk.yaml":  {Data: []byte("name: disk\n")},
		"profiles/cloud.yaml": {Data: []byte("name: cloud\nboot: {kernel: http://mirror.invalid/vmlinuz, initrd: [/assets/initrd.img]}\ncloud_config: c.yaml\n")},
		"cloud/c.yaml":        {Data: []byte("#cloud-config\nhostname: {{.MAC}}\n")},
	}, nil, Config{PublicURL: public})
	_, body := fetch(t, f.ts.URL+"/ipxe?mac=52:54:00:00:00:01")
	if !strings.Contains(body, "sanboot --no-describe --drive 0x80") || strings.Contains(body, "kernel ") {
		t.Errorf("profile without boot should boot the local disk:\n%s", body)
	}
	_, body = fetch(t, f.ts.URL+"/ipxe?mac=52:54:00:00:00:02")
	for _, want := range []string{"kernel http://mirror.invalid/vmlinuz initrd=initrd.img cloud-config-url=" + public + "/cloud-config?mac=52:54:00:00:00:02", "initrd --name initrd.img " + public + "/assets/initrd.img?mac=52%3A54%3A00%3A00%3A00%3A02"} {
		if !strings.Contains(body, want) {
			t.Errorf("script lacks %q:\n%s", want, body)
		}
	}
	resp, body := fetch(t, f.ts.URL+"/cloud-config?mac=52:54:00:00:00:02")
	if resp.StatusCode != 200 || body != "#cloud-config\nhostname: 52:54:00:00:00:02\n" {
		t.Errorf("cloud-config: %d %q", resp.StatusCode, body)
	}
	if resp, body := fetch(t, f.ts.URL+"/ignition?mac=52:54:00:00:00:02"); resp.StatusCode != 404 || !strings.Contains(body, "no Ignition") {
		t.Errorf("ignition for a profile without: %d %q", resp.StatusCode, body)
	}
}

func TestErrors(t *testing.T) {
	f := newFixture(t, fstest.MapFS{
		"groups/a.yaml":   {Data: []byte("name: a\nprofile: p\nselector: {arch: arm64}\n")},
		"profiles/p.yaml": {Data: []byte("name: p\nboot: {kernel: /k}\nignition: w.bu\n")},
		"ignition/w.bu":   {Data: []byte("variant: flatcar\nversion: 1.1.0\n")},
	}, func(*profiles.Set) Renderer { return brokenRenderer{} }, Config{})
	for _, tc := range []struct {
		path   string
		status int
		reason string
	}{
		{"/ipxe", 400, "missing mac"},
		{"/ipxe?mac=nope", 400, "invalid MAC"},
		{"/ipxe?mac=525400000001&arch=sparc", 400, "unknown arch"},
		{"/ipxe?mac=525400000001&firmware=coreboot", 400, "unknown firmware"},
		{"/ipxe?mac=525400000001&arch=x86_64", 404, "no group matches"},
		{"/ignition?mac=525400000001&arch=arm64", 500, "renderer broke"},
		{"/nope", 404, "bootfleet serves"},
	} {
		resp, body := fetch(t, f.ts.URL+tc.path)
		if resp.StatusCode != tc.status || !strings.Contains(body, tc.reason) {
			t.Errorf("%s: %d %q, want %d with %q", tc.path, resp.StatusCode, body, tc.status, tc.reason)
		}
	}
	resp, err := http.Post(f.ts.URL+"/ipxe?mac=525400000001", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", resp.StatusCode)
	}
	ev := f.Events()
	if len(ev) == 0 || ev[0].Kind != "unmatched" || ev[0].MAC != "52:54:00:00:00:01" {
		t.Errorf("unmatched machine not reported: %+v", ev)
	}
}

type brokenRenderer struct{}

func (brokenRenderer) Ignition(profiles.Match, profiles.TemplateData) ([]byte, []string, error) {
	return nil, nil, errors.New("renderer broke")
}
func (brokenRenderer) CloudConfig(profiles.Match, profiles.TemplateData) ([]byte, error) {
	return nil, errors.New("renderer broke")
}

func TestAssets(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "groups"), 0o755)
	os.MkdirAll(filepath.Join(dir, "profiles"), 0o755)
	os.MkdirAll(filepath.Join(dir, "assets", "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "groups", "g.yaml"), []byte("name: g\nprofile: p\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "profiles", "p.yaml"), []byte("name: p\n"), 0o644)
	content := strings.Repeat("0123456789", 1000)
	os.WriteFile(filepath.Join(dir, "assets", "sub", "blob.bin"), []byte(content), 0o644)
	os.WriteFile(filepath.Join(dir, "assets", "k.vmlinuz"), []byte("kernel"), 0o644)
	if err := os.Symlink("/etc", filepath.Join(dir, "assets", "etc")); err != nil {
		t.Fatal(err)
	}
	os.Symlink("sub/blob.bin", filepath.Join(dir, "assets", "inside"))
	set, err := profiles.Load(os.DirFS(dir), dir)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := ignition.New(set, ignition.Options{})
	var mu sync.Mutex
	var events []Event
	srv, err := New(Config{OnEvent: func(e Event) { mu.Lock(); events = append(events, e); mu.Unlock() }}, Snapshot{Set: set, Renderer: r})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()

	resp, body := fetch(t, ts.URL+"/assets/sub/blob.bin?mac=52:54:00:00:00:01")
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != 200 || body != content || resp.Header.Get("Content-Length") != "10000" || etag == "" {
		t.Fatalf("full GET: %d len=%d etag=%q", resp.StatusCode, len(body), etag)
	}
	resp, body = fetch(t, ts.URL+"/assets/sub/blob.bin", "Range", "bytes=100-109")
	if resp.StatusCode != 206 || body != content[100:110] || resp.Header.Get("Content-Range") != "bytes 100-109/10000" {
		t.Errorf("Range: %d %q %q", resp.StatusCode, body, resp.Header.Get("Content-Range"))
	}
	resp, body = fetch(t, ts.URL+"/assets/sub/blob.bin", "Range", "bytes=0-1,9998-")
	if resp.StatusCode != 206 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "multipart/byteranges") || !strings.Contains(body, "01") {
		t.Errorf("multi-range: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if resp, _ := fetch(t, ts.URL+"/assets/sub/blob.bin", "If-None-Match", etag); resp.StatusCode != 304 {
		t.Errorf("If-None-Match: %d, want 304", resp.StatusCode)
	}
	if resp, body := fetch(t, ts.URL+"/assets/inside"); resp.StatusCode != 200 || body != content {
		t.Errorf("symlink inside assets/: %d", resp.StatusCode)
	}
	head, err := http.Head(ts.URL + "/assets/k.vmlinuz")
	if err != nil {
		t.Fatal(err)
	}
	head.Body.Close()
	if head.StatusCode != 200 || head.ContentLength != 6 {
		t.Errorf("HEAD: %d len %d", head.StatusCode, head.ContentLength)
	}
	for _, p := range []string{"/assets/etc/passwd", "/assets/../groups/g.yaml", "/assets/%2e%2e/groups/g.yaml", "/assets/sub", "/assets/", "/assets/nope", "/assets//etc/passwd", "/assets/sub/../../profiles/p.yaml"} {
		resp, body := fetch(t, ts.URL+p)
		if resp.StatusCode == 200 || strings.Contains(body, "root:") || strings.Contains(body, "name:") {
			t.Errorf("%s: %d %q — must not serve outside assets/ or directories", p, resp.StatusCode, body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(events) != 1 || events[0].Kind != "asset" || events[0].MAC != "52:54:00:00:00:01" {
		t.Errorf("asset download events: %+v", events)
	}
}

func TestIPXEBinaries(t *testing.T) {
	f := newFixture(t, nil, nil, Config{})
	resp, body := fetch(t, f.ts.URL+"/ipxe/ipxe.efi")
	rs, size, _, err := ipxe.Embedded().Open("ipxe.efi")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := io.ReadAll(rs)
	if resp.StatusCode != 200 || int64(len(body)) != size || body != string(want) {
		t.Errorf("/ipxe/ipxe.efi: %d, %d bytes, want %d", resp.StatusCode, len(body), size)
	}
	if resp, _ := fetch(t, f.ts.URL+"/ipxe/SOURCE-OFFER.md"); resp.StatusCode != 200 {
		t.Errorf("source offer: %d", resp.StatusCode)
	}
	if resp, _ := fetch(t, f.ts.URL+"/ipxe/nope.efi"); resp.StatusCode != 404 {
		t.Errorf("unknown binary: %d", resp.StatusCode)
	}
}

func TestSwapLabelsNextBootAndEvents(t *testing.T) {
	cleared := map[string]int{}
	var mu sync.Mutex
	f := newFixture(t, nil, nil, Config{
		PublicURL: public,
		Labels:    func(mac string) map[string]string { return map[string]string{"rack": "b"} },
		NextBoot: func(mac string) string {
			mu.Lock()
			defer mu.Unlock()
			if mac == "52:54:00:aa:00:77" && cleared[mac] == 0 {
				return "debian-cloud"
			}
			return ""
		},
		ClearNextBoot: func(mac string) { mu.Lock(); cleared[mac]++; mu.Unlock() },
	})
	// Next boot: the override profile once, until its config is fetched.
	_, body := fetch(t, f.ts.URL+"/ipxe?mac=52:54:00:aa:00:77")
	if !strings.Contains(body, "profile=debian-cloud") {
		t.Fatalf("next boot not used:\n%s", body)
	}
	fetch(t, f.ts.URL+"/cloud-config?mac=52:54:00:aa:00:77")
	_, body = fetch(t, f.ts.URL+"/ipxe?mac=52:54:00:aa:00:77")
	if !strings.Contains(body, "profile=flatcar-worker") || cleared["52:54:00:aa:00:77"] != 1 {
		t.Fatalf("after the one-time boot: cleared %d times\n%s", cleared["52:54:00:aa:00:77"], body)
	}

	// Labels take part in matching; a swap changes what is served.
	set, err := profiles.Load(fstest.MapFS{
		"groups/rack.yaml": {Data: []byte("name: rack-b\nprofile: p\nselector: {rack: b}\n")},
		"profiles/p.yaml":  {Data: []byte("name: p\nboot: {kernel: /vmlinuz-new}\n")},
	}, "t")
	if err != nil {
		t.Fatal(err)
	}
	f.srv.Swap(Snapshot{Set: set, Renderer: brokenRenderer{}})
	_, body = fetch(t, f.ts.URL+"/ipxe?mac=52:54:00:aa:00:01")
	if !strings.Contains(body, "group=rack-b") || !strings.Contains(body, "/vmlinuz-new") {
		t.Errorf("after swap with labels:\n%s", body)
	}
	kinds := []string{}
	for _, e := range f.Events() {
		kinds = append(kinds, e.Kind)
	}
	if fmt.Sprint(kinds) != "[ipxe cloud-config ipxe ipxe]" {
		t.Errorf("events %v", kinds)
	}
}

func TestHealthzAndMetrics(t *testing.T) {
	var problem error
	f := newFixture(t, nil, nil, Config{Health: func() error { return problem }})
	if resp, body := fetch(t, f.ts.URL+"/healthz"); resp.StatusCode != 200 || body != "ok\n" {
		t.Errorf("healthz: %d %q", resp.StatusCode, body)
	}
	problem = errors.New("groups/a.yaml:3:1: broken")
	if resp, body := fetch(t, f.ts.URL+"/healthz"); resp.StatusCode != 200 || !strings.Contains(body, "groups/a.yaml:3:1") {
		t.Errorf("healthz degraded: %d %q", resp.StatusCode, body)
	}
	fetch(t, f.ts.URL+"/ignition?mac=52:54:00:aa:00:01")
	fetch(t, f.ts.URL+"/ipxe?mac=bad")
	_, body := fetch(t, f.ts.URL+"/metrics")
	for _, want := range []string{`bootfleet_http_requests_total{code="200",endpoint="ignition"} 1`, `bootfleet_http_requests_total{code="400",endpoint="ipxe"} 1`, "bootfleet_render_duration_seconds_bucket", "bootfleet_http_request_duration_seconds_bucket"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	problems, err := testutil.GatherAndLint(f.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric lint: %s: %s", p.Metric, p.Text)
	}
	mfs, _ := f.reg.Gather()
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "bootfleet_") {
			t.Errorf("metric %s does not start with bootfleet_", mf.GetName())
		}
	}
}

// FuzzBootRequest: any path and query gets an answer from a fixed set of
// statuses, never a panic.
func FuzzBootRequest(f *testing.F) {
	set, err := profiles.Load(examples.Lab(), "examples/lab")
	if err != nil {
		f.Fatal(err)
	}
	r, _ := ignition.New(set, ignition.Options{})
	srv, err := New(Config{PublicURL: public}, Snapshot{Set: set, Renderer: r})
	if err != nil {
		f.Fatal(err)
	}
	h := srv.Handler()
	for _, s := range []string{"/ipxe?mac=52:54:00:aa:00:01", "/ignition?mac=zz&arch=%00", "/assets/../../etc/passwd", "/metadata?mac=525400aa0001&format=json", "/grub.cfg?mac=52-54-00-aa-00-01&uuid=" + strings.Repeat("a", 100)} {
		f.Add(s)
	}
	allowed := map[int]bool{200: true, 206: true, 301: true, 304: true, 307: true, 400: true, 403: true, 404: true, 405: true, 416: true}
	f.Fuzz(func(t *testing.T, target string) {
		req, err := http.NewRequest("GET", "http://x"+target, nil)
		if err != nil || req.URL.Path == "" || req.URL.Path[0] != '/' {
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if !allowed[rec.Code] {
			t.Fatalf("%q: status %d: %s", target, rec.Code, rec.Body.String())
		}
	})
}

func BenchmarkIPXE(b *testing.B) {
	set, _ := profiles.Load(examples.Lab(), "examples/lab")
	r, _ := ignition.New(set, ignition.Options{})
	srv, _ := New(Config{PublicURL: public}, Snapshot{Set: set, Renderer: r})
	h := srv.Handler()
	req := httptest.NewRequest("GET", "/ipxe?mac=52:54:00:aa:00:01&arch=x86_64", nil)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatal(rec.Code)
		}
	}
}

// Serving a node's iPXE script renders its Ignition in the background, so
// the kernel's request later finds the transpiled config in the cache.
func TestIPXEScriptWarmsIgnition(t *testing.T) {
	set, err := profiles.Load(examples.Lab(), "examples/lab")
	if err != nil {
		t.Fatal(err)
	}
	r, err := ignition.New(set, ignition.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, nil, func(*profiles.Set) Renderer { return r }, Config{PublicURL: public})
	resp, body := fetch(t, f.ts.URL+"/ipxe?mac=52-54-00-bf-00-07&arch=x86_64&firmware=bios&uuid=00000000-0000-0000-0000-000000000000")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "ignition.config.url=") {
		t.Fatalf("/ipxe: %s\n%s", resp.Status, body)
	}
	waitMisses := time.Now().Add(10 * time.Second)
	// Until the background render has transpiled and is done.
	for _, misses := r.Stats(); misses == 0 || !f.srv.warm.idle(); _, misses = r.Stats() {
		if time.Now().After(waitMisses) {
			t.Fatal("no Ignition render after the iPXE script in 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	hits0, misses0 := r.Stats()
	resp, body = fetch(t, f.ts.URL+"/ignition?mac=52:54:00:bf:00:07")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"ignition"`) {
		t.Fatalf("/ignition: %s\n%s", resp.Status, body)
	}
	if hits, misses := r.Stats(); misses != misses0 || hits <= hits0 {
		t.Errorf("the Ignition request transpiled again: hits %d→%d, misses %d→%d", hits0, hits, misses0, misses)
	}

	// A boot storm: 40 nodes ask for their scripts at once; each one's
	// config is warmed (more than GOMAXPROCS wait their turn).
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(fmt.Sprintf("%s/ipxe?mac=52-54-00-bf-01-%02x&arch=x86_64", f.ts.URL, i))
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	for deadline := time.Now().Add(20 * time.Second); !f.srv.warm.idle(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("background renders still pending after 20s")
		}
	}
	_, misses0 = r.Stats()
	for i := range 40 {
		if resp, _ := fetch(t, fmt.Sprintf("%s/ignition?mac=52:54:00:bf:01:%02x", f.ts.URL, i)); resp.StatusCode != http.StatusOK {
			t.Fatalf("/ignition: %s", resp.Status)
		}
	}
	if _, misses := r.Stats(); misses != misses0 {
		t.Errorf("%d of 40 Ignition requests after a storm of scripts transpiled again", misses-misses0)
	}
}
