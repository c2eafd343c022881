package lxc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/conpaas/cps/plan"
)

func TestNormalize(t *testing.T) {
	for _, tc := range []struct {
		name string
		img  plan.Image
		want string // "" = accepted
	}{
		{"defaults", plan.Image{Size: 1 << 30}, ""},
		{"armhf", plan.Image{Arch: "armhf", Size: 1 << 30}, ""},
		{"arm64", plan.Image{Arch: "arm64", Size: 1 << 30}, ""},
		{"i386", plan.Image{Arch: "i386", Size: 1 << 30}, `arch "i386"`},
		{"partitions", plan.Image{Size: 1 << 30, Partitions: []plan.Partition{{Name: "root", FS: "ext4"}}}, "remove its partition blocks"},
		{"bootloader", plan.Image{Size: 1 << 30, Bootloader: plan.Bootloader{Type: "grub"}}, "remove the bootloader block"},
		{"bootloader none", plan.Image{Size: 1 << 30, Bootloader: plan.Bootloader{Type: "none"}}, ""},
		{"no size", plan.Image{}, "not a positive multiple of 4 KiB"},
		{"odd size", plan.Image{Size: 1<<30 + 512}, "not a positive multiple of 4 KiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := tc.img
			img.Name = "x"
			err := Prepare(&img)
			if tc.want == "" {
				if err != nil || img.Arch == "" {
					t.Fatalf("normalize: %v (arch %q)", err, img.Arch)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// containerize on a skeleton tree: the guest payload, the console drop-in,
// an fstab with nothing to mount, no serial getty; and a tree without init
// is refused.
func TestContainerize(t *testing.T) {
	root := t.TempDir()
	mk := func(p, content string) {
		full := filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mk("etc/shadow", "root:*:19000:0:99999:7:::\n")
	mk("lib/systemd/system/systemd-networkd.service", "")
	mk("lib/systemd/system/serial-getty@.service", "")
	img := &plan.Image{Name: "conpaas-lxc"}
	if err := containerize(root, img); err == nil || !strings.Contains(err.Error(), "/sbin/init") {
		t.Fatalf("a tree without init: %v", err)
	}
	os.MkdirAll(filepath.Join(root, "usr/sbin"), 0o755)
	os.Symlink("../lib/systemd/systemd", filepath.Join(root, "usr/sbin/init"))
	if err := containerize(root, img); err != nil {
		t.Fatal(err)
	}
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if s := read("etc/systemd/system/conpaas-contextualize.service.d/console.conf"); !strings.Contains(s, "StandardOutput=journal+console") {
		t.Errorf("console drop-in: %q", s)
	}
	for _, l := range strings.Split(read("etc/fstab"), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			t.Errorf("fstab mounts something: %q", l)
		}
	}
	if read("etc/hostname") != "conpaas-lxc\n" {
		t.Error("hostname")
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service")); err == nil {
		t.Error("serial getty enabled in a container")
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/systemd/system/multi-user.target.wants/systemd-networkd.service")); err != nil {
		t.Error("networkd not enabled")
	}
	if _, err := os.Stat(filepath.Join(root, "usr/local/sbin/conpaas-contextualize")); err != nil {
		t.Error("no contextualization")
	}
}
