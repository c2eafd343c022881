// Package boot is the end-to-end proof of issue 3: cpsimage, built from this
// tree, builds a conpaas.img from a template with the real raw builder; real
// tools check the result; QEMU (TCG, no KVM) boots it with SeaBIOS and with
// OVMF until the ConPaaS contextualization service prints its readiness
// marker on the serial console.
package boot

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/conpaas/cps/images/catalogue"
	"github.com/conpaas/cps/images/ptable"
	"github.com/conpaas/cps/internal/testutil"
	"github.com/conpaas/cps/test/qemu"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

func TestBuildAndBootMinimal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and boots an image (minutes)")
	}
	testutil.RequireRoot(t)
	for _, tool := range []string{"mmdebstrap", "mkfs.ext4", "mkfs.fat", "mcopy", "grub-mkimage", "qemu-system-x86_64", "sfdisk", "e2fsck", "fsck.vfat", "md5sum", "sha256sum"} {
		testutil.RequireTool(t, tool)
	}
	root := repoRoot(t)
	bin := filepath.Join(t.TempDir(), "cpsimage")
	if out, err := exec.Command("go", "build", "-o", bin, filepath.Join(root, "cmd/cpsimage")).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	tmpl := filepath.Join(root, "hcl/templates/examples/minimal.pkr.hcl")
	args := []string{"build", "-o", dir}
	if m := os.Getenv("CPS_MIRROR"); m != "" {
		args = append(args, "-var", "mirror="+m)
	}
	cmd := exec.Command(bin, append(args, tmpl)...)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1700000000")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("cpsimage build (%s):\n%s", time.Since(start).Round(time.Second), out)
	if err != nil {
		t.Fatalf("cpsimage build: %v", err)
	}
	img := filepath.Join(dir, "conpaas-minimal.img")

	// What the build leaves: the image, its side files, the catalogue, and
	// nothing half-written.
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := "catalogue.json catalogue.json.lock conpaas-minimal.img conpaas-minimal.img.md5 conpaas-minimal.img.sha256"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("output directory holds %q, want %q", got, want)
	}
	for _, tool := range []string{"md5sum", "sha256sum"} {
		c := exec.Command(tool, "-c", filepath.Base(img)+"."+strings.TrimSuffix(tool, "sum"))
		c.Dir = dir
		if out, err := c.CombinedOutput(); err != nil {
			t.Errorf("%s -c: %v\n%s", tool, err, out)
		}
	}
	cat, err := catalogue.Load(filepath.Join(dir, "catalogue.json"))
	if err != nil {
		t.Fatal(err)
	}
	a := cat.Find("conpaas-minimal")
	md5line, _ := os.ReadFile(img + ".md5")
	if a == nil || a.Kind != "raw" || a.File != "conpaas-minimal.img" || !strings.HasPrefix(string(md5line), a.MD5+"  ") || len(a.SHA256) != 64 || a.InputsDigest == "" {
		t.Errorf("catalogue entry %+v does not match the image (md5 file %q)", a, md5line)
	}
	st, _ := os.Stat(img)
	if st.Size() != 1536<<20 {
		t.Errorf("image is %d bytes, the template says 1536MiB", st.Size())
	}

	// The layout and filesystems, checked by util-linux, e2fsprogs and
	// dosfstools.
	out, err = exec.Command("sfdisk", "--dump", img).CombinedOutput()
	if err != nil {
		t.Fatalf("sfdisk --dump: %v\n%s", err, out)
	}
	t.Logf("sfdisk --dump:\n%s", out)
	for _, w := range []string{"label: gpt", "type=21686148-6449-6E6F-744E-656564454649", "type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "type=0FC63DAF-8483-4772-8E79-3D69D8477DE4"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("sfdisk --dump lacks %q", w)
		}
	}
	f, _ := os.Open(img)
	_, parts, err := ptable.Read(f)
	f.Close()
	if err != nil || len(parts) != 3 {
		t.Fatalf("partitions %v: %v", parts, err)
	}
	rootDev := img + "?offset=" + strconv.FormatInt(parts[2].Start, 10)
	if out, err := exec.Command("e2fsck", "-fn", rootDev).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -fn on the root filesystem: %v\n%s", err, out)
	}
	fstab, _ := exec.Command("debugfs", "-R", "cat /etc/fstab", rootDev).Output()
	if !regexp.MustCompile(`(?m)^UUID=[0-9a-f-]{36}\s+/\s+ext4`).Match(fstab) || !regexp.MustCompile(`(?m)^UUID=[0-9A-F]{4}-[0-9A-F]{4}\s+/boot/efi\s+vfat`).Match(fstab) {
		t.Errorf("fstab does not mount by UUID:\n%s", fstab)
	}
	esp := testutil.Extract(t, img, parts[1].Start, parts[1].End-parts[1].Start)
	if out, err := exec.Command("fsck.vfat", "-n", esp).CombinedOutput(); err != nil {
		t.Errorf("fsck.vfat -n on the ESP: %v\n%s", err, out)
	}

	// And it boots.
	marker := regexp.MustCompile(`CONPAAS-READY`)
	for _, uefi := range []bool{false} { // UEFI: builders/raw TestBuildAndBoot
		name := map[bool]string{false: "bios", true: "uefi"}[uefi]
		t.Run(name, func(t *testing.T) {
			r, err := qemu.Boot(context.Background(), qemu.Options{Image: img, UEFI: uefi, Marker: marker, Timeout: 8 * time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s boot under TCG: %q after %s", name, r.Line, r.Elapsed.Round(time.Second))
			// The image's kernel (loaded by our GRUB), then systemd.
			for _, w := range []string{"Linux version", "Welcome to", "systemd"} {
				if !strings.Contains(r.Console, w) {
					t.Errorf("console lacks %q", w)
				}
			}
		})
	}
}
