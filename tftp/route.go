package tftp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"

	"github.com/bootfleet/bootfleet/ipxe"
	"github.com/bootfleet/bootfleet/profiles"
)

// Route serves one part of the TFTP namespace. The server tries its routes
// in order and the first whose Match reports true answers the request, also
// when the file then turns out to be missing.
type Route interface {
	// Match reports whether the route owns name: a cleaned path relative
	// to the TFTP root, with no leading slash and no ".." element.
	Match(name string) bool
	// Open opens name for reading and returns its size (-1 when unknown).
	// A missing file is an error wrapping os.ErrNotExist; a file the route
	// refuses to serve (a symlink out of its tree) wraps
	// ErrAccessViolation.
	Open(name string) (io.ReadCloser, int64, error)
}

// route finds the first route that matches name and opens the file with it.
func route(routes []Route, name string) (io.ReadCloser, int64, error) {
	for _, r := range routes {
		if r.Match(name) {
			return r.Open(name)
		}
	}
	return nil, 0, &fs.PathError{Op: "open", Path: name, Err: os.ErrNotExist}
}

// BinariesRoute serves b's files (the iPXE binaries and their source
// offer) at the TFTP root under their bare names, such as "ipxe.efi".
func BinariesRoute(b ipxe.Binaries) Route { return binariesRoute{b} }

type binariesRoute struct{ b ipxe.Binaries }

func (r binariesRoute) Match(name string) bool { return r.b.Has(name) }

func (r binariesRoute) Open(name string) (io.ReadCloser, int64, error) {
	rs, size, _, err := r.b.Open(name)
	if err != nil {
		return nil, 0, err
	}
	return io.NopCloser(rs), size, nil
}

// FSRoute serves the files of a file system under prefix: the name
// "prefix/a/b" is the file "a/b" of fsys(). fsys is called on every request,
// so the tree can be swapped at runtime (profiles hot-reload); when it
// returns nil every name is missing.
//
// When the file system can read links (fs.ReadLinkFS, as os.DirFS, os.Root's
// FS and fs.Sub of them can), the route resolves each element of the path
// itself and refuses, with ErrAccessViolation, any symlink whose target is
// absolute or climbs out of the tree, like os.Root does; relative symlinks
// that stay inside are followed. Only regular files are served. The check
// and the open are two steps: it guards against names chosen by clients,
// not against someone rewriting the tree in between (the tree is the
// operator's).
func FSRoute(prefix string, fsys func() fs.FS) Route {
	return fsRoute{prefix: strings.Trim(prefix, "/") + "/", fsys: fsys}
}

type fsRoute struct {
	prefix string // with a trailing slash
	fsys   func() fs.FS
}

func (r fsRoute) Match(name string) bool { return strings.HasPrefix(name, r.prefix) }

func (r fsRoute) Open(name string) (io.ReadCloser, int64, error) {
	rel := strings.TrimPrefix(name, r.prefix)
	var fsys fs.FS
	if r.fsys != nil {
		fsys = r.fsys()
	}
	if fsys == nil || !fs.ValidPath(rel) {
		return nil, 0, &fs.PathError{Op: "open", Path: name, Err: os.ErrNotExist}
	}
	real, err := resolve(fsys, rel)
	if err != nil {
		return nil, 0, &fs.PathError{Op: "open", Path: name, Err: unwrapPathError(err)}
	}
	f, err := fsys.Open(real)
	if err != nil {
		return nil, 0, &fs.PathError{Op: "open", Path: name, Err: unwrapPathError(err)}
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, &fs.PathError{Op: "stat", Path: name, Err: unwrapPathError(err)}
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, 0, &fs.PathError{Op: "open", Path: name, Err: fmt.Errorf("not a regular file: %w", os.ErrNotExist)}
	}
	// Read ahead in large chunks: TFTP asks for one block (512-1468 bytes
	// usually) at a time.
	bufSize := 64 << 10
	if s := st.Size(); s < int64(bufSize) {
		bufSize = max(int(s), 512)
	}
	return &bufferedFile{Reader: bufio.NewReaderSize(f, bufSize), f: f}, st.Size(), nil
}

type bufferedFile struct {
	*bufio.Reader
	f fs.File
}

func (b *bufferedFile) Close() error { return b.f.Close() }

// resolve is profiles.ResolveFile with escapes reported as TFTP access
// violations.
func resolve(fsys fs.FS, name string) (string, error) {
	real, err := profiles.ResolveFile(fsys, name)
	if errors.Is(err, profiles.ErrOutsideTree) {
		return "", fmt.Errorf("%w: %w", err, ErrAccessViolation)
	}
	return real, err
}

// unwrapPathError drops an *fs.PathError's own path (the resolved element)
// so that the caller can report the requested name instead. A path through
// a regular file (ENOTDIR) is reported as missing.
func unwrapPathError(err error) error {
	if pe, ok := err.(*fs.PathError); ok {
		err = pe.Err
	}
	if errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("%w: %w", err, os.ErrNotExist)
	}
	return err
}
