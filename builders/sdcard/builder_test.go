package sdcard

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/conpaas/cps/builders"
	"github.com/conpaas/cps/builders/disk"
	"github.com/conpaas/cps/images/ptable"
	"github.com/conpaas/cps/internal/testutil"
	"github.com/conpaas/cps/plan"
)

// TestBuildExtract builds a full-size SD image from real Debian arm64
// packages. The default test uses mmdebstrap's extract variant (packages
// unpacked, no maintainer scripts, so no ARM emulation and about 15 s); the
// e2e test bootstraps a real system under qemu-user.
func TestBuildExtract(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tool := range []string{"mmdebstrap", "mkfs.ext4", "mkfs.fat", "mcopy", "sfdisk"} {
		testutil.RequireTool(t, tool)
	}
	b, err := builders.Get(plan.KindSDCard)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "conpaas-rpi.img")
	p := &plan.Plan{InputsDigest: "sha256:test"}
	img := plan.Image{
		Name: "rpi", Kind: plan.KindSDCard, Arch: "arm64", Output: out,
		Distribution: plan.Distribution{Variant: "extract", Components: []string{"main", "non-free-firmware"}},
		Checksums:    []string{"md5"},
		Bootloader:   plan.Bootloader{Type: "raspi", Cmdline: "cps.test=1"},
	}
	res, err := b.Build(t.Context(), p, &img, builders.Options{CacheDir: testutil.CacheDir(), SourceDateEpoch: 1700000000})
	if err != nil {
		t.Fatal(err)
	}
	parts := checkImage(t, out, plan.SDCardSize)
	t.Logf("data %d bytes, written during assembly %d bytes (%.2fx)", res.DataBytes, res.WrittenBytes, float64(res.WrittenBytes)/float64(res.DataBytes))
	if res.Sums.MD5 == "" || res.Sums.Size != plan.SDCardSize {
		t.Fatalf("sums %+v", res.Sums)
	}
	if b, err := os.ReadFile(out + ".md5"); err != nil || !strings.HasPrefix(string(b), res.Sums.MD5) {
		t.Fatalf("md5 side file: %q %v", b, err)
	}
	// The build plan is not modified by the build.
	if len(img.Partitions) != 0 || img.Size != 0 {
		t.Error("Build modified the caller's image block")
	}

	// Boot partition: firmware, kernel, device tree, config and cmdline
	// naming the root partition by the PARTUUID Linux will see.
	laid := plan.Image{Name: "rpi"}
	Layout(&laid)
	partuuid := disk.PartUUID(ptable.MBR, laid.Partitions, 1, "sha256:test/rpi")
	sfd, _ := exec.Command("sfdisk", "--dump", out).Output()
	if id := fmt.Sprintf("label-id: 0x%s", partuuid[:8]); !strings.Contains(string(sfd), id) {
		t.Fatalf("sfdisk --dump has no %q:\n%s", id, sfd)
	}
	cmdline := mtype(t, out, parts[0].start, "/cmdline.txt")
	if !strings.Contains(cmdline, "root=PARTUUID="+partuuid+" ") || !strings.Contains(cmdline, "cps.test=1") {
		t.Errorf("cmdline.txt = %q, want root=PARTUUID=%s and the template's cmdline", cmdline, partuuid)
	}
	cfg := mtype(t, out, parts[0].start, "/config.txt")
	for _, want := range []string{"arm_64bit=1", "kernel=vmlinuz"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config.txt lacks %q:\n%s", want, cfg)
		}
	}
	for _, f := range []string{"/bootcode.bin", "/start.elf", "/fixup.dat", "/bcm2837-rpi-3-b.dtb"} {
		if len(mtype(t, out, parts[0].start, f)) < 1000 {
			t.Errorf("%s missing or short on the boot partition", f)
		}
	}
	if k := mtype(t, out, parts[0].start, "/vmlinuz"); len(k) < 5<<20 {
		t.Errorf("kernel on the boot partition is %d bytes", len(k))
	}
	fstab := debugfsCat(t, out, parts[1].start, "/etc/fstab")
	if !strings.Contains(fstab, "PARTUUID="+partuuid+"\t/\text4") || !strings.Contains(fstab, "/boot/firmware\tvfat") || !strings.Contains(fstab, "\tnone\tswap") {
		t.Errorf("fstab:\n%s", fstab)
	}
	if s := debugfsCat(t, out, parts[1].start, "/usr/lib/raspi-firmware/start.elf"); len(s) < 1000 {
		t.Error("the root filesystem does not hold the raspi-firmware package")
	}
	// MD5 and SHA256 side files are always written (builders.HashAlgos),
	// as cpsimage build writes them.
	es, _ := os.ReadDir(filepath.Dir(out))
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	base := filepath.Base(out)
	if got, want := strings.Join(names, " "), base+" "+base+".md5 "+base+".sha256"; got != want {
		t.Errorf("output directory holds %q, want %q", got, want)
	}
}

func TestLayoutRefuses(t *testing.T) {
	tests := []struct {
		name string
		img  plan.Image
		want string
	}{
		{"alignment not a power of two", plan.Image{Alignment: 3 << 20}, "not a power of two"},
		{"gpt", plan.Image{PartitionTable: "gpt"}, "boots only from an MBR"},
		{"amd64", plan.Image{Arch: "amd64"}, "does not run on a Raspberry Pi"},
		{"does not fit", plan.Image{Size: 1 << 30}, "do not fit"},
		{"no boot partition", plan.Image{Partitions: []plan.Partition{{Name: "root", FS: "ext4"}}}, "FAT32 boot partition first"},
		{"two fills", plan.Image{Partitions: []plan.Partition{{Name: "boot", FS: "vfat", Size: 64 << 20}, {Name: "root", FS: "ext4"}, {Name: "data", FS: "none"}}}, "both fill"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img := tc.img
			img.Name = "rpi"
			if err := Layout(&img); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}
