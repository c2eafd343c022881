package verify

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/conpaas/cps/builders/disk"
	cfs "github.com/conpaas/cps/builders/fs"
	"github.com/conpaas/cps/images/checksum"
	"github.com/conpaas/cps/images/ptable"
	"github.com/conpaas/cps/internal/testutil"
	"github.com/conpaas/cps/plan"
)

func TestParseSumFile(t *testing.T) {
	in := "d41d8cd98f00b204e9800998ecf8427e  empty.img\n" +
		"D41D8CD98F00B204E9800998ECF8427E *bin.img\n" +
		"# comment\n\n" +
		"MD5 (bsd.img) = d41d8cd98f00b204e9800998ecf8427e\n" +
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  sha.img\n" +
		"garbage line\n" +
		"1234  short.img\n" +
		"\\d41d8cd98f00b204e9800998ecf8427e  back\\\\slash.img\n"
	entries, bad, err := ParseSumFile(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{
		{checksum.MD5, "d41d8cd98f00b204e9800998ecf8427e", "empty.img", 1},
		{checksum.MD5, "d41d8cd98f00b204e9800998ecf8427e", "bin.img", 2},
		{checksum.MD5, "d41d8cd98f00b204e9800998ecf8427e", "bsd.img", 5},
		{checksum.SHA256, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "sha.img", 6},
		{checksum.MD5, "d41d8cd98f00b204e9800998ecf8427e", `back\slash.img`, 9},
	}
	if fmt.Sprint(entries) != fmt.Sprint(want) {
		t.Errorf("entries\n got %v\nwant %v", entries, want)
	}
	if len(bad) != 2 || bad[0].Line != 7 || bad[1].Line != 8 {
		t.Errorf("malformed = %+v, want lines 7 and 8", bad)
	}
}

func FuzzParseSumFile(f *testing.F) {
	f.Add("d41d8cd98f00b204e9800998ecf8427e  empty.img\n")
	f.Add("MD5 (x) = d41d8cd98f00b204e9800998ecf8427e\n# c\n\nbad\n")
	f.Add("\\d41d8cd98f00b204e9800998ecf8427e *a\\nb\n")
	f.Fuzz(func(t *testing.T, s string) {
		entries, bad, err := ParseSumFile(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, e := range entries {
			if len(e.Hex) != e.Algo.HexLen() || e.Line < 1 {
				t.Fatalf("bad entry %+v", e)
			}
		}
		for _, b := range bad {
			if b.Line < 1 {
				t.Fatalf("bad line number %+v", b)
			}
		}
	})
}

// makeImage builds a small disk image with the real layout code: GPT with
// a BIOS boot partition, a FAT ESP, ext4 and swap.
func makeImage(t *testing.T, table string, align int64, size int64) (string, []plan.Partition) {
	t.Helper()
	testutil.RequireTool(t, "mkfs.ext4")
	testutil.RequireTool(t, "mkfs.fat")
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Truncate(size)
	parts := []plan.Partition{{Name: "esp", FS: "esp", Size: 40 << 20}, {Name: "root", FS: "ext4"}, {Name: "swap", FS: "swap", Size: 8 << 20}}
	if table == ptable.GPT {
		parts = append([]plan.Partition{{Name: "bios", FS: "bios_grub", Size: 1 << 20}}, parts...)
	}
	if err := disk.Layout(size, align, table, parts); err != nil {
		t.Fatal(err)
	}
	if err := disk.WriteTable(f, size, table, parts, "s"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, pt := range parts {
		switch pt.FS {
		case "esp":
			err = cfs.MakeFAT32(ctx, f, pt.Start, pt.End-pt.Start, "", "ESP", 1, 1)
		case "ext4":
			err = cfs.MakeExt4(ctx, f, pt.Start, pt.End-pt.Start, "", "root", disk.GUID("s", "r"), 1)
		case "swap":
			err = cfs.MakeSwap(f, pt.Start, pt.End-pt.Start, "swap", disk.GUID("s", "w"))
		case "bios_grub":
			_, err = f.WriteAt([]byte("GRUB core"), pt.Start)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	f.WriteAt([]byte{0xeb, 0x63, 0x90}, 0) // boot code
	return p, parts
}

func TestStructure(t *testing.T) {
	img, parts := makeImage(t, ptable.GPT, 1<<20, 128<<20)
	checked, ps, err := Structure(img, plan.KindRaw)
	if err != nil || len(ps) != 0 {
		t.Fatalf("sound image: %v %v", ps, err)
	}
	// What was checked, one line each.
	for _, want := range []string{"partition table: gpt, 4 partitions", "partition 1 (bios_grub, bytes 1048576-", "GRUB core image present",
		"FAT boot sector", "ext2/3/4 superblock", "swap signature", "MBR boot code: present"} {
		if !strings.Contains(strings.Join(checked, "\n"), want) {
			t.Errorf("checked lines lack %q:\n%s", want, strings.Join(checked, "\n"))
		}
	}
	// Each corruption is one line naming what and where.
	cases := []struct {
		name   string
		damage func(f *os.File)
		want   string
	}{
		{"ext4 superblock wiped", func(f *os.File) { f.WriteAt([]byte{0, 0}, parts[2].Start+1080) }, "no ext2/3/4 superblock"},
		{"FAT boot sector wiped", func(f *os.File) { f.WriteAt(make([]byte, 512), parts[1].Start) }, "no FAT boot sector"},
		{"swap signature wiped", func(f *os.File) { f.WriteAt(make([]byte, 10), parts[3].Start+4086) }, "no swap signature"},
		{"truncated download", func(f *os.File) { f.Truncate(100 << 20) }, "past the end"},
		{"table wiped", func(f *os.File) { f.WriteAt(make([]byte, 32<<10), 0); f.WriteAt(make([]byte, 32<<10), 128<<20-32<<10) }, "partition table"},
		{"MBR boot code zeroed", func(f *os.File) { f.WriteAt(make([]byte, 440), 0) }, "the MBR has no boot code"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cp := filepath.Join(t.TempDir(), "copy.img")
			copyFile(t, img, cp)
			f, _ := os.OpenFile(cp, os.O_RDWR, 0)
			tc.damage(f)
			f.Close()
			_, ps, err := Structure(cp, plan.KindRaw)
			if err != nil || !strings.Contains(strings.Join(ps, "\n"), tc.want) {
				t.Errorf("problems %q (%v), want one containing %q", ps, err, tc.want)
			}
		})
	}
}

// An LXC image is one ext4 filesystem (made here by mke2fs, as the lxc
// builder does); a partitioned disk, a truncated file or garbage is not.
func TestStructureLXC(t *testing.T) {
	testutil.RequireTool(t, "mkfs.ext4")
	fsImg := filepath.Join(t.TempDir(), "lxc.img")
	f, err := os.Create(fsImg)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(64 << 20)
	if err := cfs.MakeExt4(context.Background(), f, 0, 64<<20, "", "conpaas-root", disk.GUID("s", "lxc"), 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	disk, _ := makeImage(t, ptable.GPT, 1<<20, 128<<20)
	truncated := filepath.Join(t.TempDir(), "truncated.img")
	copyFile(t, fsImg, truncated)
	os.Truncate(truncated, 32<<20)
	garbage := filepath.Join(t.TempDir(), "garbage.img")
	os.WriteFile(garbage, bytes.Repeat([]byte("x"), 8192), 0o644)
	for _, tc := range []struct {
		name, path, kind, want string
	}{
		{"filesystem", fsImg, plan.KindLXC, ""},
		{"filesystem, kind unknown", fsImg, "", ""},
		{"partitioned disk", disk, plan.KindLXC, "partitioned disk, not a filesystem image"},
		{"truncated", truncated, plan.KindLXC, "the filesystem is 67108864 bytes but the file only 33554432"},
		{"garbage", garbage, plan.KindLXC, "no ext2/3/4 superblock"},
		{"garbage, kind unknown", garbage, "", "partition table"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checked, ps, err := Structure(tc.path, tc.kind)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(ps, "\n"); (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("problems %q, want %q", got, tc.want)
			}
			if tc.want == "" && (len(checked) != 1 || !strings.Contains(checked[0], "filesystem image: ext2/3/4 superblock, 16384 blocks of 4096 bytes")) {
				t.Errorf("checked %q", checked)
			}
		})
	}
}

func TestStructureSDCard(t *testing.T) {
	img, _ := makeImage(t, ptable.MBR, 4<<20, plan.SDCardSize)
	checked, ps, err := Structure(img, plan.KindSDCard)
	if err != nil || len(ps) != 0 {
		t.Fatalf("sound card image: %v %v", ps, err)
	}
	if c := strings.Join(checked, "\n"); !strings.Contains(c, "size: 31998345216 bytes") || !strings.Contains(c, "4 MiB boundary") {
		t.Errorf("checked lines:\n%s", c)
	}
	// Misaligned: the same layout at 1 MiB alignment, and a wrong size.
	bad, _ := makeImage(t, ptable.MBR, 1<<20, 64<<20+plan.SDCardSize%(1<<20))
	_, ps, _ = Structure(bad, plan.KindSDCard)
	joined := strings.Join(ps, "\n")
	if !strings.Contains(joined, "exactly 31998345216") || !strings.Contains(joined, "not on a 4 MiB boundary") {
		t.Errorf("problems = %q", ps)
	}
}

func TestArchiveDeep(t *testing.T) {
	img, _ := makeImage(t, ptable.GPT, 1<<20, 96<<20)
	raw, _ := os.ReadFile(img)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Name: "conpaas.img", Mode: 0o644, Size: int64(len(raw)), Typeflag: tar.TypeReg})
	tw.Write(raw)
	tw.Close()
	zw.Close()
	dir := t.TempDir()
	good := filepath.Join(dir, "conpaas.img.tar.gz")
	os.WriteFile(good, buf.Bytes(), 0o644)
	ms, err := Archive(context.Background(), good, plan.KindRaw, checksum.MD5)
	if err != nil || len(ms) != 1 || len(ms[0].Problems) != 0 {
		t.Fatalf("Archive = %+v, %v", ms, err)
	}
	want, _ := checksum.Reader(context.Background(), bytes.NewReader(raw), checksum.MD5)
	if ms[0].Sums.Get(checksum.MD5) != want.Get(checksum.MD5) {
		t.Errorf("member md5 %s, want %s", ms[0].Sums.Get(checksum.MD5), want.Get(checksum.MD5))
	}
	// Truncated and corrupted archives are errors that say to download again.
	trunc := filepath.Join(dir, "trunc.img.tar.gz")
	os.WriteFile(trunc, buf.Bytes()[:buf.Len()/2], 0o644)
	if _, err := Archive(context.Background(), trunc, "", checksum.MD5); err == nil || !strings.Contains(err.Error(), "download it again") {
		t.Errorf("truncated: %v", err)
	}
	notgz := filepath.Join(dir, "plain.tar.gz")
	os.WriteFile(notgz, []byte("plain text"), 0o644)
	if _, err := Archive(context.Background(), notgz, "", checksum.MD5); err == nil || !strings.Contains(err.Error(), "not gzip") {
		t.Errorf("not gzip: %v", err)
	}
}

func TestOVA(t *testing.T) {
	mk := func(t *testing.T, ovfFirst bool, mfDigest string) string {
		disk := testVMDK(t)
		ovf := []byte(`<?xml version="1.0"?><Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"></Envelope>`)
		sum := sha256.Sum256(disk)
		if mfDigest == "" {
			mfDigest = hex.EncodeToString(sum[:])
		}
		osum := sha256.Sum256(ovf)
		mf := fmt.Sprintf("SHA256(a.ovf)= %x\nSHA256(a-disk1.vmdk)= %s\n", osum, mfDigest)
		p := filepath.Join(t.TempDir(), "a.ova")
		f, _ := os.Create(p)
		tw := tar.NewWriter(f)
		add := func(n string, b []byte) {
			tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(b))})
			tw.Write(b)
		}
		if ovfFirst {
			add("a.ovf", ovf)
			add("a-disk1.vmdk", disk)
		} else {
			add("a-disk1.vmdk", disk)
			add("a.ovf", ovf)
		}
		add("a.mf", []byte(mf))
		tw.Close()
		f.Close()
		return p
	}
	if ps, err := OVA(mk(t, true, "")); err != nil || len(ps) != 0 {
		t.Errorf("good OVA: %v %v", ps, err)
	}
	if ps, _ := OVA(mk(t, false, "")); !strings.Contains(strings.Join(ps, "\n"), "requires it first") {
		t.Errorf("descriptor order: %v", ps)
	}
	if ps, _ := OVA(mk(t, true, strings.Repeat("0", 64))); !strings.Contains(strings.Join(ps, "\n"), "the manifest says") {
		t.Errorf("manifest mismatch: %v", ps)
	}
}

func copyFile(t *testing.T, src, dst string) {
	in, _ := os.Open(src)
	defer in.Close()
	out, _ := os.Create(dst)
	defer out.Close()
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte("SHA256(a.ovf)= " + strings.Repeat("ab", 32) + "\nSHA1(a-disk1.vmdk)= " + strings.Repeat("cd", 20) + "\n"))
	f.Add([]byte("garbage\n\nSHA512(x)=" + strings.Repeat("0", 128)))
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, bad := ParseManifest(b)
		for _, e := range entries {
			if e.File == "" || e.Line < 1 || len(e.Hex) < 40 {
				t.Fatalf("bad entry %+v", e)
			}
		}
		for _, n := range bad {
			if n < 1 {
				t.Fatalf("bad line number %d", n)
			}
		}
	})
}
