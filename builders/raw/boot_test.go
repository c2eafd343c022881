package raw

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

	"github.com/conpaas/cps/builders"
	"github.com/conpaas/cps/images/checksum"
	"github.com/conpaas/cps/images/ptable"
	"github.com/conpaas/cps/internal/testutil"
	"github.com/conpaas/cps/plan"
	"github.com/conpaas/cps/test/qemu"
)

// smallImage is the default test's image: the real builder with a minimal
// package set, booting under BIOS and UEFI.
func smallImage(out string) *plan.Image {
	return &plan.Image{
		Name: "conpaas-test", Kind: plan.KindRaw, Arch: "amd64", Version: "test",
		Output: out, Size: 1536 << 20,
		Distribution: plan.Distribution{
			Suite: "bookworm", Mirror: mirror(), Components: []string{"main"}, Variant: "minbase",
		},
		Bootloader: plan.Bootloader{Type: "grub", BIOS: true, UEFI: true, Cmdline: "console=ttyS0,115200n8", Timeout: 0},
		Checksums:  []string{"md5", "sha256"},
		// Provisioners can resolve names although the image's resolv.conf
		// is systemd-resolved's stub link, which points nowhere in a chroot.
		Provisioners: []plan.Provisioner{{Type: "shell", Inline: []string{
			"host=$(echo " + mirror() + " | sed -e 's|^[a-z]*://||' -e 's|[:/].*||')",
			`getent hosts "$host" || { echo "provisioner: cannot resolve $host" >&2; exit 1; }`,
		}}},
	}
}

func mirror() string {
	if m := os.Getenv("CPS_MIRROR"); m != "" {
		return m
	}
	return "http://deb.debian.org/debian"
}

// TestBuildAndBoot is the proof that the raw builder works: it builds a
// small image with mmdebstrap, checks it with sfdisk and e2fsck, and boots
// it under QEMU (TCG) with SeaBIOS and with OVMF until the contextualization
// service prints its readiness marker on the serial console.
func TestBuildAndBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and boots an image (minutes)")
	}
	testutil.RequireRoot(t)
	for _, tool := range []string{"mmdebstrap", "mkfs.ext4", "mkfs.fat", "mcopy", "grub-mkimage", "qemu-system-x86_64", "sfdisk", "e2fsck"} {
		testutil.RequireTool(t, tool)
	}
	ctx := context.Background()
	dir := t.TempDir()
	img := smallImage(filepath.Join(dir, "conpaas.img"))
	p := &plan.Plan{InputsDigest: "test-digest", Images: []plan.Image{*img}}
	start := time.Now()
	res, err := Builder{}.Build(ctx, p, img, builders.Options{CacheDir: testutil.CacheDir(), SourceDateEpoch: 1700000000})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built %s in %s: %d MiB data of %d MiB", res.Path, time.Since(start).Round(time.Second), res.DataBytes>>20, img.Size>>20)

	st, err := os.Stat(res.Path)
	if err != nil || st.Size() != img.Size {
		t.Fatalf("image size = %v (%v), want %d", st, err, img.Size)
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".*"))
	if len(left) != 0 {
		t.Errorf("build left temporary files: %v", left)
	}
	// The checksums returned are those of the file.
	sums, err := checksum.File(ctx, res.Path, checksum.Options{Algos: []checksum.Algo{checksum.MD5}})
	if err != nil || sums.Get(checksum.MD5) != res.Sums.Get(checksum.MD5) {
		t.Errorf("md5 of the file %s, builder said %s (%v)", sums.Get(checksum.MD5), res.Sums.Get(checksum.MD5), err)
	}

	// The partition table, read by util-linux.
	out, err := exec.Command("sfdisk", "--dump", res.Path).CombinedOutput()
	if err != nil {
		t.Fatalf("sfdisk --dump: %v\n%s", err, out)
	}
	t.Logf("sfdisk --dump:\n%s", out)
	for _, want := range []string{"label: gpt", "type=21686148-6449-6E6F-744E-656564454649", "type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "type=0FC63DAF-8483-4772-8E79-3D69D8477DE4"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("sfdisk --dump lacks %q", want)
		}
	}
	// The root filesystem, checked by e2fsck through the offset syntax.
	f, _ := os.Open(res.Path)
	_, parts, err := ptable.Read(f)
	f.Close()
	if err != nil || len(parts) != 3 {
		t.Fatalf("ReadTable: %v %v", parts, err)
	}
	rootDev := res.Path + "?offset=" + itoa(parts[2].Start)
	if out, err := exec.Command("e2fsck", "-fn", rootDev).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -fn: %v\n%s", err, out)
	}
	fstab, _ := exec.Command("debugfs", "-R", "cat /etc/fstab", rootDev).Output()
	if !strings.Contains(string(fstab), "UUID=") || !strings.Contains(string(fstab), "\t/\text4") {
		t.Errorf("fstab does not mount / by UUID:\n%s", fstab)
	}
	// The ESP must not hold the boot hostage: without nofail a slow udev
	// (seen on a loaded CI host) sent the VM to emergency mode.
	if !regexp.MustCompile(`(?m)^UUID=\S+\t/boot/efi\tvfat\t\S*\bnofail\b`).Match(fstab) {
		t.Errorf("fstab does not mount /boot/efi with nofail:\n%s", fstab)
	}
	// The image keeps its own resolv.conf (the resolved stub link), not the
	// host's copy lent to the provisioners.
	if link, _ := exec.Command("debugfs", "-R", "stat /etc/resolv.conf", rootDev).Output(); !strings.Contains(string(link), "Type: symlink") ||
		!strings.Contains(string(link), "stub-resolv.conf") {
		t.Errorf("/etc/resolv.conf is not the systemd-resolved stub link:\n%s", link)
	}
	espDev := testutil.Extract(t, res.Path, parts[1].Start, parts[1].End-parts[1].Start)
	if out, err := exec.Command("fsck.vfat", "-n", espDev).CombinedOutput(); err != nil {
		t.Errorf("fsck.vfat -n: %v\n%s", err, out)
	}

	// Two boots at once (one vCPU each), each on a restricted user network:
	// SeaBIOS with a config drive whose user data points at a director
	// serving ConPaaS.tar.gz over HTTPS with its own CA (the VM's only
	// forward), and OVMF with no context at all. The user data first
	// tries to leave the VM's network: nothing but the director may answer.
	dir2 := t.TempDir()
	director := newFakeDirector(t)
	canary := qemu.NewCanary(t)
	drive := configDrive(t, ctx, dir2, director.userData(canary.Probe(directorGuestAddr)))
	marker := regexp.MustCompile(`CONPAAS-READY`)
	for _, tc := range []struct {
		name   string
		uefi   bool
		drives []string
		nics   []qemu.NIC
		want   string
	}{
		{"bios+config-drive", false, []string{drive}, []qemu.NIC{{Forwards: []qemu.Forward{director.forward()}}}, "CONPAAS-READY role=agent type=php"},
		{"uefi+no-context", true, nil, nil, "CONPAAS-READY no-context"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, err := qemu.Boot(ctx, qemu.Options{Image: res.Path, UEFI: tc.uefi, Drives: tc.drives, NICs: tc.nics, Marker: marker, Timeout: 9 * time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %q after %s; console (end):\n%s", tc.name, r.Line, r.Elapsed.Round(time.Second), lastLines(r.Console, 40))
			if !strings.Contains(r.Line, tc.want) {
				t.Fatalf("marker line %q, want %q; console:\n%s", r.Line, tc.want, lastLines(r.Console, 80))
			}
			if !strings.Contains(r.Console, "Welcome to") {
				t.Errorf("console shows no systemd start")
			}
			if tc.drives != nil {
				if n := director.downloads.Load(); n != 1 {
					t.Errorf("the director served ConPaaS.tar.gz %d times, want 1", n)
				}
				if !strings.Contains(r.Console, "context from config drive") {
					t.Errorf("console does not say where the context came from")
				}
				// The guest tried to leave its network: only the director answered.
				for _, p := range canary.Check(r.Console, directorGuestAddr) {
					t.Errorf("isolation: %s", p)
				}
			} else if !strings.Contains(r.Console, "no context: no /root/config.cfg") {
				t.Errorf("console does not explain the missing context")
			}
		})
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
