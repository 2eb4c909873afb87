package ipxe

import (
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNames(t *testing.T) {
	got := Embedded().Names()
	want := []string{SourceOfferName, IPXEEFI, SNPEFI, UndionlyKPXE}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("Names() (-want +got):\n%s", diff)
	}
	if n := (Binaries{}).Names(); len(n) != 0 {
		t.Fatalf("zero Binaries: Names() = %v, want none", n)
	}
}

// The source offer names each binary's sha512 as ipxedust publishes it; the
// embedded bytes must be exactly those, or the offer points at the wrong
// source.
func TestSourceOfferMatchesBinaries(t *testing.T) {
	b := Embedded()
	offer := b.SourceOffer()
	if offer == "" {
		t.Fatal("empty source offer")
	}
	for _, want := range []string{"0cc8177cf798bb4cb0cabd1863056ee0245560d5", "a4542aee25c6", "GNU General Public License", "Written offer"} {
		if !strings.Contains(offer, want) {
			t.Errorf("source offer does not mention %q", want)
		}
	}
	row := regexp.MustCompile("(?m)^\\| `([^`]+)` \\|[^|]*\\| `([0-9a-f]{128})` \\|$")
	rows := row.FindAllStringSubmatch(offer, -1)
	if len(rows) != 3 {
		t.Fatalf("source offer lists %d binaries with sha512, want 3", len(rows))
	}
	for _, m := range rows {
		r, size, _, err := b.Open(m[1])
		if err != nil {
			t.Fatalf("Open(%q): %v", m[1], err)
		}
		data, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(data)) != size {
			t.Errorf("%s: size %d, read %d bytes", m[1], size, len(data))
		}
		sum := sha512.Sum512(data)
		if got := hex.EncodeToString(sum[:]); got != m[2] {
			t.Errorf("%s: sha512 %s, source offer says %s", m[1], got, m[2])
		}
	}
	r, _, _, err := b.Open(SourceOfferName)
	if err != nil {
		t.Fatal(err)
	}
	if data, _ := io.ReadAll(r); string(data) != offer {
		t.Errorf("Open(%q) differs from SourceOffer()", SourceOfferName)
	}
}

func TestOpen(t *testing.T) {
	b := Embedded()
	r, size, mod, err := b.Open(UndionlyKPXE)
	if err != nil {
		t.Fatal(err)
	}
	if size < 64<<10 || mod.IsZero() {
		t.Errorf("undionly.kpxe: size %d, modtime %v", size, mod)
	}
	// Readers are independent: seeking one does not move another.
	if _, err := r.Seek(100, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	r2, _, _, _ := b.Open(UndionlyKPXE)
	head := make([]byte, 4)
	if _, err := io.ReadFull(r2, head); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"", "nope.efi", "/ipxe.efi", "IPXE.EFI", "../ipxe.efi"} {
		if _, _, _, err := b.Open(name); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Open(%q) error = %v, want fs.ErrNotExist", name, err)
		}
		if b.Has(name) {
			t.Errorf("Has(%q) = true", name)
		}
	}
	if _, _, _, err := (Binaries{}).Open(IPXEEFI); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("zero Binaries: Open error = %v, want fs.ErrNotExist", err)
	}
}

func readAll(t *testing.T, b Binaries, name string) []byte {
	t.Helper()
	r, _, _, err := b.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
