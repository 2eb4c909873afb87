package dhcp

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

var update = flag.Bool("update", false, "rewrite golden files")

// Golden replies: a request as each kind of firmware sends it, and the
// whole reply bootfleet gives, as text (testdata/replies/*.txt; rewrite
// with go test -update).
func TestGoldenReplies(t *testing.T) {
	uuid := append([]byte{0}, []byte("0123456789abcdef")...)
	for _, tc := range []struct {
		name string
		mods []dhcpv4.Modifier
	}{
		{"plain", nil},
		{"bios-pxe", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)), dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, uuid)}},
		{"uefi-x64-pxe", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_BC))}},
		{"uefi-arm64-pxe", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00011:UNDI:003000")), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_ARM64))}},
		{"uefi-http", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("HTTPClient:Arch:00016:UNDI:003001")), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64_HTTP))}},
		{"ipxe", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")), dhcpv4.WithUserClass("iPXE", false)}},
		{"broadcast-flag", []dhcpv4.Modifier{dhcpv4.WithBroadcast(true)}},
		{"relayed", []dhcpv4.Modifier{dhcpv4.WithGatewayIP([]byte{10, 77, 0, 254})}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newTestServer(t, testConfig(), "", &clock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
			mods := append([]dhcpv4.Modifier{dhcpv4.WithTransactionID(dhcpv4.TransactionID{1, 2, 3, 4})}, tc.mods...)
			offer, dst := send(s, request(t, dhcpv4.MessageTypeDiscover, "52:54:00:00:00:01", mods...))
			if offer == nil {
				t.Fatal("no offer")
			}
			got := "to " + dst.String() + "\n" + offer.Summary()
			path := filepath.Join("testdata", "replies", tc.name+".txt")
			if *update {
				os.WriteFile(path, []byte(got), 0o644)
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (go test -update creates it)", err)
			}
			if string(want) != got {
				t.Errorf("reply differs from %s (go test -update to accept):\n--- got\n%s\n--- want\n%s", path, got, want)
			}
		})
	}
}
