package profiles

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
)

// ErrOutsideTree marks a name that reaches outside a directory tree, for
// example through a symlink to /etc. Servers of assets/ (HTTP, TFTP) refuse
// such names.
var ErrOutsideTree = errors.New("outside the served tree")

// maxLinks bounds the symlinks followed for one name, as the kernel does.
const maxLinks = 40

// ResolveFile returns the path of name inside fsys with every symlink replaced
// by its target, refusing targets that are absolute or leave fsys. It checks
// that the result is a regular file before anything opens it (opening a FIFO
// would block). Without fs.ReadLinkFS there are no symlinks to see; it only
// checks the file type.
func ResolveFile(fsys fs.FS, name string) (string, error) {
	if _, ok := fsys.(fs.ReadLinkFS); !ok {
		st, err := fs.Stat(fsys, name)
		if err != nil {
			return "", err
		}
		if !st.Mode().IsRegular() {
			return "", &fs.PathError{Op: "open", Path: name, Err: fmt.Errorf("not a regular file: %w", os.ErrNotExist)}
		}
		return name, nil
	}
	var (
		done  []string // resolved elements: existing, none a symlink
		todo  = strings.Split(name, "/")
		links int
		last  fs.FileInfo
	)
	for len(todo) > 0 {
		elem := todo[0]
		todo = todo[1:]
		switch elem {
		case "", ".":
			continue
		case "..":
			if len(done) == 0 {
				return "", &fs.PathError{Op: "open", Path: name, Err: fmt.Errorf("symlink leads out of the tree: %w", ErrOutsideTree)}
			}
			done = done[:len(done)-1]
			last = nil
			continue
		}
		cur := path.Join(path.Join(done...), elem)
		st, err := fs.Lstat(fsys, cur)
		if err != nil {
			return "", &fs.PathError{Op: "open", Path: name, Err: unwrapPathError(err)}
		}
		if st.Mode()&fs.ModeSymlink == 0 {
			done = append(done, elem)
			last = st
			continue
		}
		if links++; links > maxLinks {
			return "", &fs.PathError{Op: "open", Path: name, Err: fmt.Errorf("too many symlinks: %w", ErrOutsideTree)}
		}
		target, err := fs.ReadLink(fsys, cur)
		if err != nil {
			return "", &fs.PathError{Op: "open", Path: name, Err: unwrapPathError(err)}
		}
		if target == "" || strings.HasPrefix(target, "/") || strings.ContainsRune(target, '\\') {
			return "", &fs.PathError{Op: "open", Path: name, Err: fmt.Errorf("symlink %s -> %s leads out of the tree: %w", cur, target, ErrOutsideTree)}
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	if last == nil || !last.Mode().IsRegular() {
		return "", &fs.PathError{Op: "open", Path: name, Err: fmt.Errorf("not a regular file: %w", os.ErrNotExist)}
	}
	return path.Join(done...), nil
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
