package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func exampleDir() string { return filepath.Join(repoRoot(), "examples", "lab") }

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// TestServeExample serves examples/lab and fetches every boot endpoint with
// curl, as iPXE and Ignition would, then checks render prints the same bytes.
func TestServeExample(t *testing.T) {
	s := startServer(t, "--profiles", exampleDir())

	script := curl(t, s.URL+"/boot.ipxe")
	if !strings.HasPrefix(script, "#!ipxe") || !strings.Contains(script, "/ipxe?mac=") {
		t.Errorf("/boot.ipxe is not an iPXE script chaining /ipxe:\n%s", script)
	}

	ipxe := curl(t, "-f", s.URL+"/ipxe?mac=52-54-00-AA-00-01&arch=x86_64")
	for _, want := range []string{"#!ipxe", s.URL + "/assets/flatcar/amd64/flatcar_production_pxe.vmlinuz",
		"bootfleet.role=loadgen", "ignition.config.url=" + s.URL + "/ignition?mac=52:54:00:aa:00:01", "boot"} {
		if !strings.Contains(ipxe, want) {
			t.Errorf("/ipxe script lacks %q:\n%s", want, ipxe)
		}
	}
	rendered, stderr, code := run(t, "render", "--profiles", exampleDir(), "--public-url", s.URL, "--mac", "52-54-00-AA-00-01", "--arch", "x86_64")
	if code != 0 || rendered != ipxe {
		t.Errorf("render --kind ipxe (exit %d, %s) differs from what serve sent:\n%s\n---\n%s", code, stderr, rendered, ipxe)
	}

	ign := curl(t, "-f", s.URL+"/ignition?mac=525400aa0002")
	var cfg struct {
		Ignition struct{ Version string }
		Storage  struct {
			Files []struct{ Path string }
		}
	}
	if err := json.Unmarshal([]byte(ign), &cfg); err != nil {
		t.Fatalf("/ignition is not JSON: %v\n%s", err, ign)
	}
	if !strings.HasPrefix(cfg.Ignition.Version, "3.") || len(cfg.Storage.Files) == 0 {
		t.Errorf("/ignition: version %q, %d files; want a 3.x config with files", cfg.Ignition.Version, len(cfg.Storage.Files))
	}
	renderedIgn, _, code := run(t, "render", "--profiles", exampleDir(), "--public-url", s.URL, "--mac", "52:54:00:aa:00:02", "--kind", "ignition")
	if code != 0 || renderedIgn != ign {
		t.Errorf("render --kind ignition differs from what serve sent:\n%s\n---\n%s", renderedIgn, ign)
	}

	grub := curl(t, "-f", s.URL+"/grub.cfg?mac=52:54:00:aa:00:09")
	if !strings.Contains(grub, "linux") || !strings.Contains(grub, "initrd") {
		t.Errorf("/grub.cfg lacks linux/initrd lines:\n%s", grub)
	}
	meta := curl(t, "-f", s.URL+"/metadata?mac=52:54:00:aa:00:01")
	for _, want := range []string{"GROUP=loadgen", "PROFILE=flatcar-worker", "MAC=52:54:00:aa:00:01"} {
		if !strings.Contains(meta, want) {
			t.Errorf("/metadata lacks %q:\n%s", want, meta)
		}
	}

	// The worker profile has no cloud-config: 404 with the reason.
	if code, body := get(t, s.URL+"/cloud-config?mac=52:54:00:aa:00:01"); code != http.StatusNotFound || body == "" {
		t.Errorf("/cloud-config for a profile without one: %d %q, want 404 with a reason", code, body)
	}
	// Bad input: 400 with the reason.
	for _, q := range []string{"/ipxe", "/ipxe?mac=zz", "/ignition?mac=52:54:00:aa:00", "/ipxe?mac=525400aa0001&arch=sparc"} {
		if code, body := get(t, s.URL+q); code != http.StatusBadRequest || strings.TrimSpace(body) == "" {
			t.Errorf("%s: %d %q, want 400 with a reason", q, code, body)
		}
	}

	// Assets: a Range request gives 206 and exactly those bytes.
	asset, err := os.ReadFile(filepath.Join(exampleDir(), "assets", "README.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if got := curl(t, "-f", "-r", "9-20", s.URL+"/assets/README.txt"); got != string(asset[9:21]) {
		t.Errorf("Range 9-20 gave %q, want %q", got, asset[9:21])
	}
	head := curl(t, "-f", "-I", "-r", "0-3", s.URL+"/assets/README.txt")
	if !strings.Contains(head, "206") || !strings.Contains(strings.ToLower(head), "etag:") {
		t.Errorf("HEAD with Range: want 206 with an ETag:\n%s", head)
	}
	for _, p := range []string{"/assets/../groups/default.yaml", "/assets/%2e%2e/groups/default.yaml", "/assets/nope"} {
		if code, _ := get(t, s.URL+p); code == http.StatusOK {
			t.Errorf("%s answered 200; must not escape assets/ or invent files", p)
		}
	}

	metrics := curl(t, "-f", s.URL+"/metrics")
	for _, want := range []string{"bootfleet_http_requests_total", "bootfleet_profiles_valid 1"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	if err := s.stop(t); err != nil {
		t.Errorf("serve exited with %v after SIGTERM, want a clean exit\n%s", err, s.stderr.String())
	}
}

// TestServeHotReload edits a copy of examples/lab under a running server:
// a broken edit keeps the last good set serving and says why in /healthz;
// a good edit is served within seconds.
func TestServeHotReload(t *testing.T) {
	dir := t.TempDir()
	copyDir(t, exampleDir(), dir)
	s := startServer(t, "--profiles", dir)
	group := filepath.Join(dir, "groups", "loadgen.yaml")
	orig, err := os.ReadFile(group)
	if err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(group, []byte("name: loadgen\nprofile: flatcar-worker\nselector: {mac: [52:54:00:aa:00:01\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "/healthz to report the broken file", func() bool {
		_, body := get(t, s.URL+"/healthz")
		return strings.Contains(body, "loadgen.yaml:3:")
	})
	if body := curl(t, "-f", s.URL+"/ipxe?mac=52:54:00:aa:00:01"); !strings.Contains(body, "bootfleet.role=loadgen") {
		t.Errorf("after a broken edit the last good set must keep serving:\n%s", body)
	}
	if m := curl(t, s.URL+"/metrics"); !strings.Contains(m, "bootfleet_profiles_valid 0") {
		t.Error("bootfleet_profiles_valid is not 0 after a broken edit")
	}

	fixed := strings.Replace(string(orig), "role: loadgen", "role: chaos", 1)
	if err := os.WriteFile(group, []byte(fixed), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the good edit to be served", func() bool {
		_, body := get(t, s.URL+"/ipxe?mac=52:54:00:aa:00:01")
		return strings.Contains(body, "bootfleet.role=chaos")
	})
	if code, body := get(t, s.URL+"/healthz"); code != http.StatusOK || strings.Contains(body, "failed") {
		t.Errorf("/healthz after the fix: %d %q", code, body)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 10s waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestServeRefusesInvalidDir: serve on a broken directory exits non-zero
// within seconds, with every error located.
func TestServeRefusesInvalidDir(t *testing.T) {
	dir := t.TempDir()
	copyDir(t, exampleDir(), dir)
	if err := os.WriteFile(filepath.Join(dir, "groups", "bad.yaml"), []byte("name: bad\nprofile: nope\ncolour: red\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, stderr, code := run(t, "serve", "--profiles", dir, "--http", freePort(t), "--data-dir", t.TempDir(), "--tftp=false")
	if code == 0 {
		t.Fatal("serve started on an invalid directory")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("serve took %s to refuse", d)
	}
	for _, want := range []string{"groups/bad.yaml:2:10: profile \"nope\" not found", "groups/bad.yaml:3:1: unknown key \"colour\""} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

// TestServeDefaults runs serve with no flags (the environment only moves the
// port off :8080): it serves the built-in example and creates the admin
// token with mode 0600.
func TestServeDefaults(t *testing.T) {
	cwd := t.TempDir()
	addr := freePort(t)
	cmd := execIn(t, cwd, []string{"BOOTFLEET_HTTP=" + addr, "BOOTFLEET_TFTP=false"}, "serve")
	url := "http://" + addr
	waitFor(t, "serve on defaults", func() bool {
		resp, err := http.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	if body := curl(t, "-f", url+"/ipxe?mac=52:54:00:aa:00:02"); !strings.Contains(body, "bootfleet.role=loadgen") {
		t.Errorf("built-in example not served:\n%s", body)
	}
	st, err := os.Stat(filepath.Join(cwd, "bootfleet-data", "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("admin.token mode %v, want 0600", st.Mode().Perm())
	}
	_ = cmd
}

func TestValidate(t *testing.T) {
	out, stderr, code := run(t, "validate", exampleDir())
	if code != 0 || !strings.Contains(out, "valid") {
		t.Fatalf("validate examples/lab: exit %d\n%s%s", code, out, stderr)
	}
	dir := t.TempDir()
	copyDir(t, exampleDir(), dir)
	os.WriteFile(filepath.Join(dir, "groups", "a.yaml"), []byte("name: a\nprofile: flatcar-worker\npriority: x\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "profiles", "b.yaml"), []byte("name: b\nboot: {kernel: /k, args: [\"{{.Nope\"]}\nignition: gone.bu\n"), 0o644)
	_, stderr, code = run(t, "validate", dir)
	if code == 0 {
		t.Fatal("validate accepted a broken directory")
	}
	for _, want := range []string{
		filepath.Join(dir, "groups", "a.yaml") + ":3:11: priority: want an integer",
		filepath.Join(dir, "profiles", "b.yaml") + ":3:11: ignition: gone.bu not found",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("validate output lacks %q:\n%s", want, stderr)
		}
	}
	if _, stderr, code := run(t, "validate", filepath.Join(dir, "nope")); code == 0 || !strings.Contains(stderr, "does not exist") {
		t.Errorf("validate of a missing dir: exit %d, %q", code, stderr)
	}
}

func TestVersion(t *testing.T) {
	out, _, code := run(t, "version")
	if code != 0 || !strings.HasPrefix(out, "bootfleet ") {
		t.Errorf("version: exit %d, %q", code, out)
	}
}
