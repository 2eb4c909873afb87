package tftp

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
)

// ErrAccessViolation marks a request refused because its name is not a
// plain path inside the TFTP root: it has a ".." element, a backslash, a
// control character, or it reaches a symlink that leads out of its tree.
// The client gets a TFTP error "access violation".
var ErrAccessViolation = errors.New("access violation")

// ErrWriteRefused is reported (to OnTransfer and the log) for every write
// request: the server is read-only.
var ErrWriteRefused = errors.New("write refused: read-only server")

// maxNameLen bounds a requested file name; real boot file names are short.
const maxNameLen = 1024

// cleanPath turns a file name from a read request into a slash-separated
// path relative to the TFTP root that satisfies fs.ValidPath, or fails with
// ErrAccessViolation.
//
// Leading slashes are dropped: "/ipxe.efi" means the root's ipxe.efi, as with
// tftpd-hpa -s (so "/etc/passwd" is looked up as root/etc/passwd and is not
// found). "." elements and repeated slashes are removed. Anything that could
// name something outside the root, or that a client has no business
// sending, is refused rather than normalised: any ".." element, a
// backslash (a DOS separator that a later layer might honour), NUL or other
// control characters, an empty name, and names over 1 KiB.
func cleanPath(name string) (string, error) {
	if len(name) > maxNameLen {
		return "", fmt.Errorf("name of %d bytes: %w", len(name), ErrAccessViolation)
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c == '\\':
			return "", fmt.Errorf("%q: backslash in name: %w", name, ErrAccessViolation)
		case c < 0x20 || c == 0x7f:
			return "", fmt.Errorf("%q: control character in name: %w", name, ErrAccessViolation)
		}
	}
	rel := strings.TrimLeft(name, "/")
	for elem := range strings.SplitSeq(rel, "/") {
		if elem == ".." {
			return "", fmt.Errorf("%q: \"..\" in name: %w", name, ErrAccessViolation)
		}
	}
	rel = path.Clean(rel)
	if rel == "." || !fs.ValidPath(rel) {
		return "", fmt.Errorf("%q: not a file name: %w", name, ErrAccessViolation)
	}
	return rel, nil
}
