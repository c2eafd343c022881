package fs

import (
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat32"

	"github.com/conpaas/cps/internal/testutil"
)

const (
	mib   = 1 << 20
	epoch = 1700000000
	uid   = "0b7c9a8e-1d2f-4e5a-9b6c-7d8e9f0a1b2c"
)

// tree makes a small root-like tree with the shapes mke2fs -d must keep.
func tree(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(d, "etc/conpaas"), 0o755))
	must(os.MkdirAll(filepath.Join(d, "boot/efi"), 0o755))
	must(os.WriteFile(filepath.Join(d, "etc/conpaas/config.cfg"), []byte("DIRECTOR_URL=https://director:5555\n"), 0o600))
	must(os.WriteFile(filepath.Join(d, "boot/vmlinuz"), bytes.Repeat([]byte("kernel"), 300000), 0o644))
	must(os.Symlink("conpaas/config.cfg", filepath.Join(d, "etc/link")))
	// systemd unit names carry backslash escapes; debugfs must find them.
	must(os.WriteFile(filepath.Join(d, `etc/system-systemd\x2dcryptsetup.slice`), []byte("[Unit]\n"), 0o644))
	must(os.WriteFile(filepath.Join(d, "etc/with space"), []byte("x"), 0o644))
	must(os.Link(filepath.Join(d, "boot/vmlinuz"), filepath.Join(d, "boot/vmlinuz.hard")))
	return d
}

func newImage(t *testing.T, size int64) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return f
}

// extract copies [off, off+n) of f into its own file for tools that take
// no offset (e2fsck, fsck.vfat).
func extract(t *testing.T, f *os.File, off, n int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "part.img")
	out, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, io.NewSectionReader(f, off, n)); err != nil {
		t.Fatal(err)
	}
	return p
}

func md5File(t *testing.T, p string) [16]byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return md5.Sum(b)
}

func TestMakeExt4(t *testing.T) {
	testutil.RequireTool(t, "mkfs.ext4")
	testutil.RequireTool(t, "e2fsck")
	ctx := context.Background()
	src := tree(t)
	var sums [][16]byte
	for i := 0; i < 2; i++ {
		// Different ctimes and a newer mtime on the second run: the
		// result must not change.
		if i == 1 {
			time.Sleep(1100 * time.Millisecond)
			now := time.Now()
			os.Chtimes(filepath.Join(src, "boot/vmlinuz"), now, now)
			os.Chmod(filepath.Join(src, "etc/conpaas/config.cfg"), 0o600)
		}
		img := newImage(t, 72*mib)
		if err := MakeExt4(ctx, img, 4*mib, 64*mib, src, "conpaas-root", uid, epoch); err != nil {
			t.Fatal(err)
		}
		part := extract(t, img, 4*mib, 64*mib)
		if out, err := exec.Command("e2fsck", "-fn", part).CombinedOutput(); err != nil {
			t.Fatalf("e2fsck -fn: %v\n%s", err, out)
		}
		out, err := exec.Command("debugfs", "-R", "cat /etc/conpaas/config.cfg", part).Output()
		if err != nil || !strings.Contains(string(out), "DIRECTOR_URL=https://director:5555") {
			t.Fatalf("file content not in the filesystem: %v %q", err, out)
		}
		out, _ = exec.Command("debugfs", "-R", "stat /etc/link", part).Output()
		if !strings.Contains(string(out), "Fast link dest: \"conpaas/config.cfg\"") && !strings.Contains(string(out), "conpaas/config.cfg") {
			t.Errorf("symlink lost:\n%s", out)
		}
		out, _ = exec.Command("debugfs", "-R", "stat /boot/vmlinuz", part).Output()
		if !strings.Contains(string(out), "Links: 2") {
			t.Errorf("hard link lost:\n%s", out)
		}
		out, _ = exec.Command("blkid", "-p", "-o", "export", part).Output()
		if !strings.Contains(string(out), "UUID="+uid) || !strings.Contains(string(out), "LABEL=conpaas-root") {
			t.Errorf("blkid: %s", out)
		}
		// The bytes before the partition stay a hole.
		head := make([]byte, 4*mib)
		img.ReadAt(head, 0)
		if !bytes.Equal(head, make([]byte, 4*mib)) {
			t.Error("MakeExt4 wrote outside its partition")
		}
		sums = append(sums, md5File(t, part))
	}
	if sums[0] != sums[1] {
		t.Error("two builds of the same tree with the same epoch differ")
	}
}

func TestMakeExt4TooSmall(t *testing.T) {
	testutil.RequireTool(t, "mkfs.ext4")
	src := t.TempDir()
	big := make([]byte, 8*mib)
	for i := range big {
		big[i] = byte(i * 7)
	}
	os.WriteFile(filepath.Join(src, "big"), big, 0o644)
	img := newImage(t, 8*mib)
	err := MakeExt4(context.Background(), img, 0, 4*mib, src, "r", uid, epoch)
	if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "bigger") {
		t.Fatalf("err = %v, want ErrNoSpace telling to make it bigger", err)
	}
}

func TestMakeFAT32(t *testing.T) {
	testutil.RequireTool(t, "fsck.vfat")
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "EFI/BOOT"), 0o755)
	os.MkdirAll(filepath.Join(src, "overlays"), 0o755)
	os.WriteFile(filepath.Join(src, "EFI/BOOT/BOOTX64.EFI"), bytes.Repeat([]byte{0x4d, 0x5a, 1, 2}, 100000), 0o644)
	os.WriteFile(filepath.Join(src, "config.txt"), []byte("arm_64bit=1\nenable_uart=1\n"), 0o644)
	os.WriteFile(filepath.Join(src, "cmdline.txt"), []byte("console=serial0,115200 root=PARTUUID=12345678-02\n"), 0o644)
	var sums [][16]byte
	for i := 0; i < 2; i++ {
		if i == 1 {
			time.Sleep(1100 * time.Millisecond) // a clock-stamped field would now differ
		}
		img := newImage(t, 70*mib)
		if err := MakeFAT32(context.Background(), img, 4*mib, 64*mib, src, "RASPIFIRM", 0x2468ace0, epoch); err != nil {
			t.Fatal(err)
		}
		part := extract(t, img, 4*mib, 64*mib)
		if out, err := exec.Command("fsck.vfat", "-n", part).CombinedOutput(); err != nil {
			t.Fatalf("fsck.vfat -n: %v\n%s", err, out)
		}
		out, _ := exec.Command("blkid", "-p", "-o", "export", part).Output()
		if !strings.Contains(string(out), "UUID=2468-ACE0") || !strings.Contains(string(out), "LABEL=RASPIFIRM") {
			t.Errorf("blkid: %s", out)
		}
		// Read back through go-diskfs.
		pf, _ := os.Open(part)
		fsys, err := fat32.Read(file.New(pf, true), 64*mib, 0, 512)
		if err != nil {
			t.Fatal(err)
		}
		r, err := fsys.OpenFile("/config.txt", os.O_RDONLY)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r)
		if string(b) != "arm_64bit=1\nenable_uart=1\n" {
			t.Errorf("config.txt = %q", b)
		}
		pf.Close()
		sums = append(sums, md5File(t, part))
	}
	if sums[0] != sums[1] {
		t.Error("two FAT32 builds with the same epoch differ")
	}
}

func TestMakeSwapMatchesMkswap(t *testing.T) {
	testutil.RequireTool(t, "mkswap")
	size := int64(64 * mib)
	ours := newImage(t, size+mib)
	if err := MakeSwap(ours, mib, size, "swap", uid); err != nil {
		t.Fatal(err)
	}
	ref := newImage(t, size)
	if out, err := exec.Command("mkswap", "-U", uid, "-L", "swap", ref.Name()).CombinedOutput(); err != nil {
		t.Fatalf("mkswap: %v\n%s", err, out)
	}
	a := make([]byte, 8192)
	b := make([]byte, 8192)
	ours.ReadAt(a, mib)
	ref.ReadAt(b, 0)
	if !bytes.Equal(a, b) {
		t.Error("our swap header differs from mkswap's")
	}
	if err := MakeSwap(ours, 0, 4096, "s", uid); err == nil {
		t.Error("a swap area of one page must be refused")
	}
}

// A small FAT32 partition inside a much bigger image (the ESP of a 2 GiB
// disk) must still be a valid FAT32: mkfs.fat would size clusters from the
// whole file.
func TestMakeFAT32InBigImage(t *testing.T) {
	testutil.RequireTool(t, "fsck.vfat")
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "EFI/BOOT"), 0o755)
	os.WriteFile(filepath.Join(src, "EFI/BOOT/BOOTX64.EFI"), bytes.Repeat([]byte{1, 2, 3}, 300000), 0o644)
	img := newImage(t, 2<<30)
	if err := MakeFAT32(context.Background(), img, 2*mib, 64*mib, src, "ESP", 7, epoch); err != nil {
		t.Fatal(err)
	}
	part := extract(t, img, 2*mib, 64*mib)
	if out, err := exec.Command("fsck.vfat", "-n", part).CombinedOutput(); err != nil {
		t.Fatalf("fsck.vfat -n: %v\n%s", err, out)
	}
	if err := MakeFAT32(context.Background(), img, 2*mib, 16*mib, "", "ESP", 7, epoch); err == nil {
		t.Error("a 16 MiB FAT32 must be refused with the minimum size")
	}
}
