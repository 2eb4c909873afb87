// Package ipxe exposes the iPXE network boot programs that bootfleet embeds
// (from github.com/tinkerbell/ipxedust) as a value, so that tftp and
// httpboot serve the same bytes without any package-level state.
//
// The binaries run ipxedust's embedded script: it sets the DHCP user class
// to "Tinkerbell" (not "iPXE"), offers Ctrl-B for a shell for 2 seconds,
// then runs DHCP and autoboot on the first interface with a link. A DHCP
// server breaking the chainload loop must treat either user class (or
// iPXE's option 175) as "already iPXE".
//
// iPXE is GPL-2.0-or-later: every place that serves the binaries should also
// make the source offer (SourceOffer, served under SourceOfferName) reachable.
package ipxe

import (
	"bytes"
	_ "embed"
	"io"
	"io/fs"
	"slices"
	"time"

	"github.com/tinkerbell/ipxedust/binary"
)

// Names of the files a Binaries value holds.
const (
	// UndionlyKPXE is iPXE for legacy BIOS PXE (x86), chainloaded over TFTP.
	UndionlyKPXE = "undionly.kpxe"
	// IPXEEFI is iPXE for UEFI on x86-64, with its own NIC drivers.
	IPXEEFI = "ipxe.efi"
	// SNPEFI is iPXE for UEFI on arm64, using the firmware's SNP network
	// driver. ipxedust ships no x86-64 snponly.efi.
	SNPEFI = "snp.efi"
	// SourceOfferName is the name under which the GPL source offer is
	// served next to the binaries.
	SourceOfferName = "SOURCE-OFFER.md"
)

//go:embed SOURCE-OFFER.md
var sourceOffer string

// Binaries is a read-only set of iPXE programs plus their source offer.
// Values are immutable and safe for concurrent use; copying one is cheap.
// The zero value holds no files.
type Binaries struct {
	files   map[string][]byte
	offer   string
	modTime time.Time
}

// Embedded returns the iPXE binaries compiled into bootfleet: undionly.kpxe,
// ipxe.efi and snp.efi (arm64), and the source offer.
func Embedded() Binaries {
	return Binaries{
		files: map[string][]byte{
			UndionlyKPXE:    binary.Undionly,
			IPXEEFI:         binary.IpxeEFI,
			SNPEFI:          binary.SNP,
			SourceOfferName: []byte(sourceOffer),
		},
		offer: sourceOffer,
		// The commit time of the ipxedust version the binaries come from
		// (v0.0.0-20250812160707-a4542aee25c6).
		modTime: time.Date(2025, time.August, 12, 16, 7, 7, 0, time.UTC),
	}
}

// Names lists, sorted, every name Open serves, the source offer included.
func (b Binaries) Names() []string {
	names := make([]string, 0, len(b.files))
	for n := range b.files {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Has reports whether Open serves name.
func (b Binaries) Has(name string) bool {
	_, ok := b.files[name]
	return ok
}

// Open returns a reader over the named file (a bare name such as
// "ipxe.efi", no directory), its size and its modification time (for the
// embedded files, the commit time of the ipxedust version). An
// unknown name gives an *fs.PathError wrapping fs.ErrNotExist.
func (b Binaries) Open(name string) (io.ReadSeeker, int64, time.Time, error) {
	data, ok := b.files[name]
	if !ok {
		return nil, 0, time.Time{}, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return bytes.NewReader(data), int64(len(data)), b.modTime, nil
}

// SourceOffer returns the GPL-2 written offer for the iPXE source, as
// Markdown (the contents of SOURCE-OFFER.md in this package).
func (b Binaries) SourceOffer() string { return b.offer }
