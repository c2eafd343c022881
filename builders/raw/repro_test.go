//go:build e2e

package raw

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/conpaas/cps/builders"
	"github.com/conpaas/cps/builders/rootfs"
	"github.com/conpaas/cps/images/ptable"
	"github.com/conpaas/cps/internal/testutil"
	"github.com/conpaas/cps/plan"
)

func requireBuildTools(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tool := range []string{"mmdebstrap", "mkfs.ext4", "mkfs.fat", "mcopy", "grub-mkimage"} {
		testutil.RequireTool(t, tool)
	}
}

func buildOnce(t *testing.T, dir, cache string, epoch int64) (*builders.Result, time.Duration) {
	t.Helper()
	img := smallImage(filepath.Join(dir, "conpaas.img"))
	img.Distribution.CacheDir = cache
	p := &plan.Plan{InputsDigest: "repro", Images: []plan.Image{*img}}
	start := time.Now()
	res, err := Builder{}.Build(context.Background(), p, img, builders.Options{SourceDateEpoch: epoch})
	if err != nil {
		t.Fatal(err)
	}
	return res, time.Since(start)
}

// diffReport counts the bytes that differ between two images of the same
// size and says in which partition they are.
func diffReport(a, b string) (int64, string, error) {
	fa, err := os.Open(a)
	if err != nil {
		return 0, "", err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return 0, "", err
	}
	defer fb.Close()
	_, parts, err := ptable.Read(fa)
	if err != nil {
		return 0, "", err
	}
	perPart := map[string]int64{}
	where := func(off int64) string {
		for _, p := range parts {
			if off >= p.Start && off < p.End {
				return p.Name
			}
		}
		return "outside partitions"
	}
	var n int64
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for off := int64(0); ; off += int64(len(ba)) {
		na, ea := io.ReadFull(fa, ba)
		nb, _ := io.ReadFull(fb, bb)
		if na != nb {
			return 0, "", fmt.Errorf("sizes differ")
		}
		if !bytes.Equal(ba[:na], bb[:nb]) {
			for i := 0; i < na; i++ {
				if ba[i] != bb[i] {
					n++
					perPart[where(off+int64(i))]++
				}
			}
		}
		if ea != nil {
			break
		}
	}
	return n, fmt.Sprint(perPart), nil
}

// TestReproducible: two builds with the same SOURCE_DATE_EPOCH and package
// cache give the same bytes.
func TestReproducible(t *testing.T) {
	requireBuildTools(t)
	cache := builders.Options{CacheDir: testutil.CacheDir()}.PackageCache(&plan.Image{Arch: "amd64"})
	a, ta := buildOnce(t, t.TempDir(), cache, 1700000000)
	b, tb := buildOnce(t, t.TempDir(), cache, 1700000000)
	t.Logf("builds took %s and %s; md5 %s and %s", ta.Round(time.Second), tb.Round(time.Second), a.Sums.MD5, b.Sums.MD5)
	if a.Sums.MD5 != b.Sums.MD5 {
		n, where, err := diffReport(a.Path, b.Path)
		t.Fatalf("two builds differ: md5 %s vs %s; %d bytes differ (%s) %v", a.Sums.MD5, b.Sums.MD5, n, where, err)
	}
}

// TestBenchRaw is run by scripts/bench/raw.sh (CPS_BENCH=1): cold build
// with an empty package cache, warm rebuild, and the reference: mmdebstrap
// alone with the same packages and warm cache (the floor of any build).
func TestBenchRaw(t *testing.T) {
	if os.Getenv("CPS_BENCH") != "1" {
		t.Skip("run by scripts/bench/raw.sh")
	}
	requireBuildTools(t)
	cold := t.TempDir()
	rc, tc := buildOnce(t, t.TempDir(), cold, 1700000000)
	rw, tw := buildOnce(t, t.TempDir(), cold, 1700000000)
	img := smallImage(filepath.Join(t.TempDir(), "x.img"))
	args, err := bootstrapArgsForBench(img, filepath.Join(t.TempDir(), "root"), cold)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if out, err := exec.Command("mmdebstrap", args...).CombinedOutput(); err != nil {
		t.Fatalf("mmdebstrap: %v\n%s", err, out)
	}
	tm := time.Since(start)
	fmt.Printf("%-34s %12s %12s\n", "raw image (minbase+kernel, 1.5GiB)", "cps", "reference")
	fmt.Printf("%-34s %12s %12s\n", "cold build (empty apt cache)", tc.Round(time.Second), "-")
	fmt.Printf("%-34s %12s %12s\n", "warm rebuild / mmdebstrap alone", tw.Round(time.Second), tm.Round(time.Second))
	fmt.Printf("%-34s %12d %12s\n", "image size (bytes)", rw.Sums.Size, "-")
	fmt.Printf("%-34s %12d %12s\n", "image data bytes (allocated)", rw.DataBytes, "-")
	fmt.Printf("%-34s %12d %12s\n", "bytes written to make the image", rw.WrittenBytes, "-")
	fmt.Printf("%-34s %12.2f %12s\n", "written / data (goal <= 1.10)", float64(rw.WrittenBytes)/float64(rw.DataBytes), "-")
	fmt.Printf("%-34s %12v %12s\n", "cold and warm md5 equal", rc.Sums.MD5 == rw.Sums.MD5, "-")
}

func bootstrapArgsForBench(img *plan.Image, dir, cache string) ([]string, error) {
	if err := Prepare(img); err != nil {
		return nil, err
	}
	img.Distribution.CacheDir = cache
	ef, err := early()
	if err != nil {
		return nil, err
	}
	return rootfs.Args(img, dir, basePackages, ef...)
}
