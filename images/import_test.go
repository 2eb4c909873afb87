package images

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestImportAndList(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "flatcar_production_pxe.vmlinuz"), []byte("kernel bytes"), 0o644)
	os.WriteFile(filepath.Join(src, "flatcar_production_pxe_image.cpio.gz"), []byte("initrd bytes"), 0o644)
	profiles := t.TempDir()
	got, err := Import(profiles, "flatcar", []string{filepath.Join(src, "flatcar_production_pxe.vmlinuz"), filepath.Join(src, "flatcar_production_pxe_image.cpio.gz")})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Asset != "/assets/flatcar/flatcar_production_pxe.vmlinuz" || got[0].Size != 12 {
		t.Fatalf("imported: %+v", got[0])
	}
	// The sums file is what sha256sum -c checks.
	cmd := exec.Command("sha256sum", "-c", "SHA256SUMS")
	cmd.Dir = filepath.Join(profiles, "assets", "flatcar")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, out)
	}
	list, err := List(profiles)
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %+v %v", list, err)
	}
	if ok, err := list[0].Verify(); !ok || err != nil {
		t.Fatalf("verify: %v %v", ok, err)
	}
	os.WriteFile(list[0].Path, []byte("tampered"), 0o644)
	if ok, _ := list[0].Verify(); ok {
		t.Fatal("a changed file still verifies")
	}
	if _, err := Import(profiles, "Bad Name", []string{list[1].Path}); err == nil || !strings.Contains(err.Error(), "Bad Name") {
		t.Fatalf("bad name: %v", err)
	}
}
