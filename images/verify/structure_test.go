package verify

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/conpaas/cps/images/checksum"
	"github.com/conpaas/cps/internal/testutil"
	"github.com/conpaas/cps/plan"
)

// The crafted GPT headers of issue 15 reach the table reader through a
// file (verify --structure) and through a stream inside a tar.gz (verify
// --deep); both report the table as invalid, and nothing is left in the
// temporary directory (the old stream path made a /tmp/cps-verify-table-*
// file and left it behind when the reader crashed).
func TestStructureCraftedGPT(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	for _, c := range [][2]uint32{{2147483647, 4294967295}, {4294967295, 128}} {
		disk := testutil.CraftedGPT(2<<20, c[0], c[1])
		path := filepath.Join(t.TempDir(), "crafted.img")
		if err := os.WriteFile(path, disk, 0o644); err != nil {
			t.Fatal(err)
		}
		_, ps, err := Structure(path, plan.KindRaw)
		if err != nil || !strings.Contains(strings.Join(ps, "\n"), "not a valid partition table") {
			t.Errorf("Structure(count %d, size %d) = %q, %v", c[0], c[1], ps, err)
		}
		tgz := filepath.Join(t.TempDir(), "crafted.img.tar.gz")
		writeTarGz(t, tgz, "crafted.img", disk)
		ms, err := Archive(context.Background(), tgz, plan.KindRaw, checksum.MD5)
		if err != nil || len(ms) != 1 || !strings.Contains(strings.Join(ms[0].Problems, "\n"), "not a valid partition table") {
			t.Errorf("Archive(count %d, size %d) = %+v, %v", c[0], c[1], ms, err)
		}
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("left in TMPDIR: %v", left)
	}
}

func writeTarGz(t testing.TB, path, name string, b []byte) {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg})
	tw.Write(b)
	tw.Close()
	zw.Close()
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// FuzzStructure is the structure check's fuzz target: the same bytes are
// checked as a file (random access) and as a stream (what verify --deep
// does inside an archive); neither may panic, and both must agree on
// whether the disk is sound.
func FuzzStructure(f *testing.F) {
	f.Add(testutil.CraftedGPT(8<<10, 2147483647, 4294967295), uint8(0))
	f.Add(testutil.CraftedGPT(8<<10, 4294967295, 128), uint8(1))
	f.Add(testutil.CraftedGPT(24<<10, 128, 128), uint8(1))
	mbr := make([]byte, 16<<10)
	copy(mbr[446:], []byte{0x80, 0, 0, 0, 0x83, 0, 0, 0, 8, 0, 0, 0, 16, 0, 0, 0})
	mbr[510], mbr[511] = 0x55, 0xaa
	f.Add(mbr, uint8(2))
	f.Fuzz(func(t *testing.T, b []byte, k uint8) {
		kind := []string{"", plan.KindRaw, plan.KindSDCard}[int(k)%3]
		size := int64(len(b))
		_, file := checkDisk(bytes.NewReader(b), size, kind)
		m, err := streamImage(context.Background(), bytes.NewReader(b), "fuzz.img", size, kind, []checksum.Algo{checksum.MD5})
		if err != nil {
			t.Fatalf("stream of %d in-memory bytes: %v", size, err)
		}
		if (len(file) == 0) != (len(m.Problems) == 0) {
			t.Fatalf("file check %q, stream check %q", file, m.Problems)
		}
	})
}
