package sdcard

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/conpaas/cps/images/sparse"
	"github.com/conpaas/cps/internal/testutil"
	"github.com/conpaas/cps/plan"
)

// smallTrees makes a boot and a root directory with a few files.
func smallTrees(t *testing.T) (boot, root string) {
	t.Helper()
	boot, root = t.TempDir(), t.TempDir()
	w := func(p, s string) {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w(filepath.Join(boot, "config.txt"), "arm_64bit=1\n")
	w(filepath.Join(boot, "cmdline.txt"), "root=PARTUUID=x-02 rw rootwait\n")
	w(filepath.Join(root, "etc/hostname"), "conpaas-rpi\n")
	w(filepath.Join(root, "etc/conpaas/controller"), "172.16.0.1\n")
	os.MkdirAll(filepath.Join(root, "boot/firmware"), 0o755)
	return boot, root
}

// buildSmall assembles a full-size (sparse) SD image from small trees.
func buildSmall(t *testing.T) (string, *plan.Image) {
	t.Helper()
	for _, tool := range []string{"mkfs.ext4", "mkfs.fat", "mcopy", "debugfs"} {
		testutil.RequireTool(t, tool)
	}
	img := &plan.Image{Name: "rpi", Kind: plan.KindSDCard, Output: filepath.Join(t.TempDir(), "rpi.img")}
	if err := Layout(img); err != nil {
		t.Fatal(err)
	}
	boot, root := smallTrees(t)
	if _, err := Assemble(t.Context(), nil, img, boot, root, "test-seed", 1700000000); err != nil {
		t.Fatal(err)
	}
	return img.Output, img
}

func TestAssembleDefaultLayout(t *testing.T) {
	path, img := buildSmall(t)
	parts := checkImage(t, path, plan.SDCardSize)
	for i, p := range parts {
		if p.start != img.Partitions[i].Start || p.size != img.Partitions[i].End-img.Partitions[i].Start {
			t.Errorf("partition %d: sfdisk says %d+%d, the plan %d-%d", i+1, p.start, p.size, img.Partitions[i].Start, img.Partitions[i].End)
		}
	}
	if got := mtype(t, path, parts[0].start, "/config.txt"); got != "arm_64bit=1\n" {
		t.Errorf("config.txt on the boot partition: %q", got)
	}
	if got := debugfsCat(t, path, parts[1].start, "/etc/conpaas/controller"); got != "172.16.0.1" {
		t.Errorf("/etc/conpaas/controller in the root: %q", got)
	}
}

func TestResize(t *testing.T) {
	testutil.RequireTool(t, "resize2fs")
	path, _ := buildSmall(t)
	before := checkImage(t, path, plan.SDCardSize)
	sig := mbrSignature(t, path)

	const card64 = 63996690432 // 2 x the 32 GB image: a "64 GB" card
	res, err := Resize(t.Context(), nil, path, card64, 0)
	if err != nil {
		t.Fatal(err)
	}
	after := checkImage(t, path, card64)
	if after[0] != before[0] || after[1].start != before[1].start {
		t.Errorf("boot or root start moved: before %+v after %+v", before, after)
	}
	if after[2].size != before[2].size || after[1].start+after[1].size != after[2].start {
		t.Errorf("swap not moved to the end with the same size, or root not grown up to it: %+v", after)
	}
	if after[1].size <= before[1].size+(plan.SDCardSize-(8<<20)) {
		t.Errorf("root grew from %d to only %d bytes", before[1].size, after[1].size)
	}
	if mbrSignature(t, path) != sig {
		t.Error("the MBR disk signature (PARTUUID prefix) changed")
	}
	// Content kept, filesystem really grown.
	if got := debugfsCat(t, path, after[1].start, "/etc/conpaas/controller"); got != "172.16.0.1" {
		t.Errorf("root content after resize: %q", got)
	}
	if got := mtype(t, path, after[0].start, "/config.txt"); got != "arm_64bit=1\n" {
		t.Errorf("boot content after resize: %q", got)
	}
	t.Logf("resize wrote %d bytes", res.Copied)
	// No temporary files left next to the image.
	es, _ := os.ReadDir(filepath.Dir(path))
	for _, e := range es {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left behind %s", e.Name())
		}
	}
}

func TestResizeRefuses(t *testing.T) {
	path, _ := buildSmall(t)
	orig, _ := os.Stat(path)
	tests := []struct {
		name  string
		size  int64
		align int64
		want  string
		dir   bool // resize a directory instead of the image
	}{
		{"smaller", plan.SDCardSize - 4<<20, 0, "smaller than the image (31998345216 bytes)", false},
		{"not sectors", plan.SDCardSize + 100, 0, "not a multiple of 512", false},
		{"too little to grow", plan.SDCardSize + 512, 0, "no room to grow", false},
		{"bad alignment", 2 * plan.SDCardSize, 3 << 20, "not a power of two", false},
		{"not a file", 2 * plan.SDCardSize, 0, "is not a regular file; sdcard resize grows an image file before it is flashed", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := path
			if tc.dir {
				p = t.TempDir()
			}
			_, err := Resize(t.Context(), nil, p, tc.size, tc.align)
			if !errors.Is(err, ErrBadSize) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrBadSize containing %q", err, tc.want)
			}
			// The sentinel classifies (exit 2); its text is not appended:
			// "... is not a regular file ...: bad size" blamed the size.
			if strings.HasSuffix(err.Error(), "bad size") {
				t.Errorf("%q ends with the sentinel's text", err)
			}
			st, _ := os.Stat(path)
			if st.Size() != orig.Size() || !st.ModTime().Equal(orig.ModTime()) {
				t.Fatal("the image changed")
			}
		})
	}
}

// A truncated image (a download cut short) was grown as if its missing
// tail were zeros, its .md5 recomputed over the loss, and exit 0. It is
// refused, naming the partition past the end, and left as it was.
func TestResizeRefusesTruncated(t *testing.T) {
	_, img := buildSmall(t)
	root, swap := img.Partitions[1], img.Partitions[2]
	tests := []struct {
		name string
		size int64 // the file cut to this many bytes
		want string
	}{
		{"inside the root partition", root.Start + 1<<20, "rpi.img ends at byte " + itoa(root.End) + ", past the end of the " + itoa(root.Start+1<<20) + "-byte file: the image is truncated"},
		{"inside the swap partition", swap.End - 4096, "rpi.img ends at byte " + itoa(swap.End) + ", past the end"},
		{"by one sector", swap.End - 512, "get it again and check it with cpsimage verify"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path, _ := buildSmall(t) // each from a sound image: only the cut is wrong
			side := path + ".md5"
			os.WriteFile(side, []byte("00000000000000000000000000000000  rpi.img\n"), 0o644)
			if err := os.Truncate(path, tc.size); err != nil {
				t.Fatal(err)
			}
			_, err := Resize(t.Context(), nil, path, 2*plan.SDCardSize, 0)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if st, _ := os.Stat(path); st.Size() != tc.size {
				t.Errorf("the image is %d bytes, was %d", st.Size(), tc.size)
			}
			if b, _ := os.ReadFile(side); !strings.HasPrefix(string(b), "00000000") {
				t.Errorf("the side file was rewritten: %q", b)
			}
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func mbrSignature(t *testing.T, path string) string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 4)
	f.ReadAt(b, 440)
	return string(b)
}

// TestRefreshSums: side files of a changed image are recomputed, absent
// ones are not created. (On a resized 64 GB image this hashes 64 GB, so
// it is tested on a small file.)
func TestRefreshSums(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.img")
	os.WriteFile(p, []byte("hello\n"), 0o644)
	os.WriteFile(p+".md5", []byte("0123456789abcdef0123456789abcdef  x.img\n"), 0o644)
	if err := refreshSums(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p + ".md5")
	if !strings.HasPrefix(string(b), "b1946ac92492d2347c6235b4d2611184") {
		t.Fatalf(".md5 = %q, want md5 of hello\\n", b)
	}
	if _, err := os.Stat(p + ".sha256"); err == nil {
		t.Fatal("created a .sha256 side file that did not exist")
	}
}

// TestAssembleReproducible: the same trees, seed and epoch give the same
// bytes. Compared extent by extent (the holes are equal by construction of
// equal extents; hashing 32 GB of zeros twice would take minutes).
func TestAssembleReproducible(t *testing.T) {
	a, _ := buildSmall(t)
	time.Sleep(1100 * time.Millisecond) // a later clock must not show
	b, _ := buildSmall(t)
	fa, _ := os.Open(a)
	defer fa.Close()
	fb, _ := os.Open(b)
	defer fb.Close()
	ea, _ := sparse.DataExtents(fa)
	eb, _ := sparse.DataExtents(fb)
	if len(ea) != len(eb) {
		t.Fatalf("%d data extents vs %d", len(ea), len(eb))
	}
	for i := range ea {
		if ea[i] != eb[i] {
			t.Fatalf("extent %d: %+v vs %+v", i, ea[i], eb[i])
		}
		x, y := make([]byte, ea[i].Len), make([]byte, eb[i].Len)
		fa.ReadAt(x, ea[i].Off)
		fb.ReadAt(y, eb[i].Off)
		if !bytes.Equal(x, y) {
			for j := range x {
				if x[j] != y[j] {
					t.Fatalf("builds differ at byte %d", ea[i].Off+int64(j))
				}
			}
		}
	}
}
