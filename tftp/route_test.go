package tftp

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"

	"github.com/bootfleet/bootfleet/ipxe"
)

func TestCleanPath(t *testing.T) {
	tests := map[string]struct {
		in      string
		want    string
		wantErr error
	}{
		"bare name":            {in: "ipxe.efi", want: "ipxe.efi"},
		"leading slash":        {in: "/ipxe.efi", want: "ipxe.efi"},
		"many leading slashes": {in: "///assets/a", want: "assets/a"},
		"absolute stays in":    {in: "/etc/passwd", want: "etc/passwd"},
		"dot elements":         {in: "./assets/./a", want: "assets/a"},
		"double slash":         {in: "assets//a", want: "assets/a"},
		"trailing slash":       {in: "assets/a/", want: "assets/a"},
		"dots in names":        {in: "assets/a..b/..c/c..", want: "assets/a..b/..c/c.."},
		"spaces":               {in: "assets/my file", want: "assets/my file"},
		"dotdot":               {in: "../etc/passwd", wantErr: ErrAccessViolation},
		"dotdot inside":        {in: "assets/../ipxe.efi", wantErr: ErrAccessViolation},
		"dotdot at end":        {in: "assets/..", wantErr: ErrAccessViolation},
		"absolute dotdot":      {in: "/../../etc/passwd", wantErr: ErrAccessViolation},
		"backslash":            {in: `assets\..\..\etc\passwd`, wantErr: ErrAccessViolation},
		"dos path":             {in: `\boot\pxelinux.0`, wantErr: ErrAccessViolation},
		"nul":                  {in: "ipxe.efi\x00.txt", wantErr: ErrAccessViolation},
		"newline":              {in: "ipxe.efi\nfake log line", wantErr: ErrAccessViolation},
		"empty":                {in: "", wantErr: ErrAccessViolation},
		"root":                 {in: "/", wantErr: ErrAccessViolation},
		"dot":                  {in: ".", wantErr: ErrAccessViolation},
		"too long":             {in: strings.Repeat("a", maxNameLen+1), wantErr: ErrAccessViolation},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := cleanPath(tt.in)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("cleanPath(%q) = %q, %v; want error %v", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("cleanPath(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"ipxe.efi", "/ipxe.efi", "../etc/passwd", "assets/../../x", `a\b`, "a/./b//c/", "/", "", "..", ".../...", "a/..", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := cleanPath(in)
		if err != nil {
			if !errors.Is(err, ErrAccessViolation) {
				t.Fatalf("cleanPath(%q): error %v does not wrap ErrAccessViolation", in, err)
			}
			return
		}
		if !fs.ValidPath(got) || got == "." {
			t.Fatalf("cleanPath(%q) = %q: not a valid fs path", in, got)
		}
		for _, elem := range strings.Split(got, "/") {
			if elem == ".." {
				t.Fatalf("cleanPath(%q) = %q: has ..", in, got)
			}
		}
		if strings.ContainsAny(got, "\\\x00") {
			t.Fatalf("cleanPath(%q) = %q: has a backslash or NUL", in, got)
		}
		// Joined to a root, it stays below the root.
		if j := filepath.Join("/srv/root", got); !strings.HasPrefix(j, "/srv/root/") {
			t.Fatalf("cleanPath(%q) = %q escapes: %s", in, got, j)
		}
		// Cleaning is idempotent.
		if again, err := cleanPath(got); err != nil || again != got {
			t.Fatalf("cleanPath(%q) = %q, but cleanPath of that = %q, %v", in, got, again, err)
		}
	})
}

// stubRoute answers for names with its prefix, with its own name as content.
type stubRoute struct{ prefix, id string }

func (r stubRoute) Match(name string) bool { return strings.HasPrefix(name, r.prefix) }
func (r stubRoute) Open(string) (io.ReadCloser, int64, error) {
	return io.NopCloser(strings.NewReader(r.id)), int64(len(r.id)), nil
}

func TestRouteChain(t *testing.T) {
	assets := fstest.MapFS{
		"flatcar/vmlinuz":   {Data: []byte("kernel")},
		"ipxe.efi":          {Data: []byte("asset named like a binary")},
		"dir/nested/file":   {Data: []byte("nested")},
		"empty":             {Data: []byte{}},
		"flatcar/dir/.keep": {Data: []byte{}},
	}
	embedded := ipxe.Embedded()
	defaultChain := []Route{BinariesRoute(embedded), FSRoute("assets", func() fs.FS { return assets })}
	tests := map[string]struct {
		routes  []Route
		name    string
		want    string // content; "" with wantErr unset means an empty file
		binary  string // or: this embedded binary's bytes
		wantErr error
	}{
		"binary at root":           {routes: defaultChain, name: "ipxe.efi", binary: "ipxe.efi"},
		"bios binary":              {routes: defaultChain, name: "undionly.kpxe", binary: "undionly.kpxe"},
		"arm64 binary":             {routes: defaultChain, name: "snp.efi", binary: "snp.efi"},
		"source offer":             {routes: defaultChain, name: "SOURCE-OFFER.md", binary: "SOURCE-OFFER.md"},
		"asset":                    {routes: defaultChain, name: "assets/flatcar/vmlinuz", want: "kernel"},
		"asset shadowing binary":   {routes: defaultChain, name: "assets/ipxe.efi", want: "asset named like a binary"},
		"nested asset":             {routes: defaultChain, name: "assets/dir/nested/file", want: "nested"},
		"empty asset":              {routes: defaultChain, name: "assets/empty", want: ""},
		"missing asset":            {routes: defaultChain, name: "assets/nope", wantErr: os.ErrNotExist},
		"asset directory":          {routes: defaultChain, name: "assets/flatcar/dir", wantErr: os.ErrNotExist},
		"assets itself":            {routes: defaultChain, name: "assets", wantErr: os.ErrNotExist},
		"unknown root file":        {routes: defaultChain, name: "pxelinux.0", wantErr: os.ErrNotExist},
		"binary not under assets":  {routes: defaultChain, name: "assets/undionly.kpxe", wantErr: os.ErrNotExist},
		"no routes":                {routes: nil, name: "ipxe.efi", wantErr: os.ErrNotExist},
		"first match wins":         {routes: []Route{stubRoute{"a", "first"}, stubRoute{"a/b", "second"}}, name: "a/b/c", want: "first"},
		"falls through":            {routes: []Route{stubRoute{"x", "first"}, stubRoute{"a/b", "second"}}, name: "a/b/c", want: "second"},
		"match then missing stops": {routes: []Route{FSRoute("assets", func() fs.FS { return assets }), stubRoute{"assets", "later"}}, name: "assets/nope", wantErr: os.ErrNotExist},
		"nil assets func":          {routes: []Route{FSRoute("assets", nil)}, name: "assets/flatcar/vmlinuz", wantErr: os.ErrNotExist},
		"assets func gives nil":    {routes: []Route{FSRoute("assets", func() fs.FS { return nil })}, name: "assets/flatcar/vmlinuz", wantErr: os.ErrNotExist},
		"prefix with slashes":      {routes: []Route{FSRoute("/assets/", func() fs.FS { return assets })}, name: "assets/flatcar/vmlinuz", want: "kernel"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			rc, size, err := route(tt.routes, tt.name)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("route(%q) error = %v, want %v", tt.name, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("route(%q): %v", tt.name, err)
			}
			defer rc.Close()
			got, err := io.ReadAll(rc)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want
			if tt.binary != "" {
				r, _, _, err := embedded.Open(tt.binary)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(r)
				want = string(b)
			}
			if string(got) != want {
				t.Errorf("route(%q) gave %d bytes, want %d", tt.name, len(got), len(want))
			}
			if size != int64(len(want)) {
				t.Errorf("route(%q) size %d, want %d", tt.name, size, len(want))
			}
		})
	}
}

// The assets tree can be swapped while serving, as profiles hot-reload.
func TestFSRouteSwap(t *testing.T) {
	var current fs.FS = fstest.MapFS{"a": {Data: []byte("one")}}
	r := FSRoute("assets", func() fs.FS { return current })
	read := func() string {
		rc, _, err := r.Open("assets/a")
		if err != nil {
			return err.Error()
		}
		defer rc.Close()
		b, _ := io.ReadAll(rc)
		return string(b)
	}
	if got := read(); got != "one" {
		t.Fatalf("before swap: %q", got)
	}
	current = fstest.MapFS{"a": {Data: []byte("two")}}
	if got := read(); got != "two" {
		t.Fatalf("after swap: %q", got)
	}
}

// Symlinks in an os.DirFS tree: those that stay inside are followed, those
// that lead out (absolute, or climbing above the root) are refused, even
// when the root is an fs.Sub of a larger directory.
func TestFSRouteSymlinks(t *testing.T) {
	dir := t.TempDir()
	mkfile := func(p, content string) {
		t.Helper()
		p = filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	symlink := func(target, p string) {
		t.Helper()
		if err := os.Symlink(target, filepath.Join(dir, p)); err != nil {
			t.Fatal(err)
		}
	}
	mkfile("assets/flatcar/vmlinuz", "kernel")
	mkfile("secret.txt", "outside assets")
	symlink("flatcar/vmlinuz", "assets/kernel")                          // inside
	symlink("flatcar", "assets/current")                                 // directory, inside
	symlink("../flatcar/vmlinuz", "assets/flatcar/again")                // climbs, stays inside
	symlink("../../assets/flatcar/vmlinuz", "assets/flatcar/outandback") // leaves the root, comes back
	symlink("/etc", "assets/etc")                                        // absolute
	symlink("../secret.txt", "assets/secret")                            // out of assets, into its parent
	symlink(filepath.Join(dir, "assets/flatcar/vmlinuz"), "assets/abs-inside")
	symlink("loop-b", "assets/loop-a")
	symlink("loop-a", "assets/loop-b")
	symlink("nowhere", "assets/dangling")
	if err := syscall.Mkfifo(filepath.Join(dir, "assets/fifo"), 0o644); err != nil {
		t.Fatal(err)
	}

	sub, err := fs.Sub(os.DirFS(dir), "assets")
	if err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(filepath.Join(dir, "assets"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	for fsName, fsys := range map[string]fs.FS{
		"DirFS":        os.DirFS(filepath.Join(dir, "assets")),
		"Sub of DirFS": sub,
		"os.Root FS":   root.FS(),
	} {
		r := FSRoute("assets", func() fs.FS { return fsys })
		tests := map[string]struct {
			want    string
			wantErr error
		}{
			"assets/flatcar/vmlinuz":   {want: "kernel"},
			"assets/kernel":            {want: "kernel"},
			"assets/current/vmlinuz":   {want: "kernel"},
			"assets/flatcar/again":     {want: "kernel"},
			"assets/etc/passwd":        {wantErr: ErrAccessViolation},
			"assets/etc":               {wantErr: ErrAccessViolation},
			"assets/secret":            {wantErr: ErrAccessViolation},
			"assets/abs-inside":        {wantErr: ErrAccessViolation},
			"assets/loop-a":            {wantErr: ErrAccessViolation},
			"assets/dangling":          {wantErr: os.ErrNotExist},
			"assets/fifo":              {wantErr: os.ErrNotExist},
			"assets/flatcar":           {wantErr: os.ErrNotExist},
			"assets/current":           {wantErr: os.ErrNotExist},
			"assets/flatcar/vmlinuz/x": {wantErr: os.ErrNotExist},
		}
		for name, tt := range tests {
			t.Run(fsName+"/"+name, func(t *testing.T) {
				rc, _, err := r.Open(name)
				if tt.wantErr != nil {
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("Open(%q) error = %v, want %v", name, err, tt.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatalf("Open(%q): %v", name, err)
				}
				defer rc.Close()
				b, _ := io.ReadAll(rc)
				if string(b) != tt.want {
					t.Fatalf("Open(%q) = %q, want %q", name, b, tt.want)
				}
			})
		}
	}
}
