package images

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The browser image from this machine's Debian packages: the tag, the
// headless shell with its dynamic linker, libraries (linked and NSS's
// loaded ones), fonts, CA certificates and the bootfleet binary.
func TestBuildBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a few hundred MiB")
	}
	if _, err := os.Stat("/usr/lib/chromium/chromium-headless-shell"); err != nil {
		t.Fatal("chromium-headless-shell is not installed: `make test` installs it")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "browser.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := BuildBrowser(f, BrowserConfig{Bootfleet: exe})
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	tags, err := ArchiveTags(path)
	if err != nil || len(tags) != 1 || tags[0] != BrowserImage {
		t.Fatalf("tags %v %v", tags, err)
	}
	if got, ok := FindContainerArchive(filepath.Dir(path), "bootfleet/browser-load"); !ok || got != path {
		t.Fatalf("the server does not find the archive for its tag: %q %v", got, ok)
	}
	names := layerNames(t, path)
	for _, want := range []string{"usr/bin/bootfleet", "usr/lib/chromium/chromium-headless-shell", "usr/lib/chromium/icudtl.dat",
		"usr/lib64/ld-linux-x86-64.so.2", "usr/lib/x86_64-linux-gnu/libnss3.so", "usr/lib/x86_64-linux-gnu/libsoftokn3.so",
		"usr/lib/x86_64-linux-gnu/libfontconfig.so.1", "etc/fonts/fonts.conf", "usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
		"etc/ssl/certs/ca-certificates.crt", "bin", "tmp/", "etc/passwd"} {
		if !names[want] {
			t.Errorf("image lacks %s", want)
		}
	}
	if names["usr/lib/chromium/chromium"] || names["usr/share/doc/chromium-headless-shell/copyright"] {
		t.Errorf("image has full chromium or docs it was not asked for")
	}
	t.Logf("FIGURE browser-load image: %d files, layer %d MiB", st.Files, st.LayerSize>>20)
}

// layerNames lists the paths in the archive's layer.
func layerNames(t *testing.T, archive string) map[string]bool {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	names := map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(h.Name, "/layer.tar") {
			continue
		}
		lr := tar.NewReader(tr)
		for {
			lh, err := lr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			names[lh.Name] = true
		}
	}
	if len(names) == 0 {
		t.Fatal("no layer in the archive")
	}
	return names
}
