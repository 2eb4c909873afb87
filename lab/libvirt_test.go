package lab

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The libvirt XML for the lab's nodes validates against libvirt's own
// schemas (virt-xml-validate, Debian's libvirt-clients).
func TestLibvirtXMLValidates(t *testing.T) {
	if _, err := exec.LookPath("virt-xml-validate"); err != nil {
		t.Fatal("virt-xml-validate is missing: `make test` installs libvirt-clients")
	}
	files, err := LibvirtXML(t.TempDir(), 3, FirmwareMixed, 512)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 4 {
		t.Fatalf("got %d files, want network + 3 domains", len(files))
	}
	for i, f := range files {
		schema := "domain"
		if i == 0 {
			schema = "network"
		}
		out, err := exec.Command("virt-xml-validate", f, schema).CombinedOutput()
		if err != nil {
			b, _ := os.ReadFile(f)
			t.Errorf("%s does not validate: %v\n%s\n%s", f, err, out, b)
		}
	}
	b, _ := os.ReadFile(files[3])
	if !strings.Contains(string(b), `<rom enabled="no">`) || !strings.Contains(string(b), `firmware="efi"`) {
		t.Errorf("the UEFI native PXE node has no ROM switched off or no EFI firmware:\n%s", b)
	}
	b, _ = os.ReadFile(files[0])
	if !strings.Contains(string(b), `<dns enable="no">`) || !strings.Contains(string(b), "10.77.0.1") {
		t.Errorf("network XML:\n%s", b)
	}
}
