package flash

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/conpaas/cps/images/sparse"
	"github.com/conpaas/cps/internal/testutil"
)

const mib = 1 << 20

// sparseImage writes a size-byte image with random data at the given
// offsets (each n bytes), plus an allocated run of zeros, and holes
// elsewhere: the shapes a built SD image has.
func sparseImage(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "card.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct{ off, n int64 }{{0, 4096}, {4 * mib, 3*mib + 512}, {20 * mib, 11 * mib}, {size - 8192, 8192}} {
		b := make([]byte, r.n)
		rand.Read(b)
		if _, err := f.WriteAt(b, r.off); err != nil {
			t.Fatal(err)
		}
	}
	// Mapped zeros: must still be written to a used card.
	if _, err := f.WriteAt(make([]byte, mib), 40*mib); err != nil {
		t.Fatal(err)
	}
	return p
}

// garbage makes a file of n bytes of 0xAA standing in for a used card.
func garbage(t *testing.T, n int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), fmt.Sprintf("card-%d", n))
	if err := os.WriteFile(p, bytes.Repeat([]byte{0xAA}, int(n)), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func read(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func allocated(t *testing.T, p string) int64 {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ext, err := sparse.DataExtents(f)
	if err != nil {
		t.Fatal(err)
	}
	return sparse.DataBytes(ext)
}

// bmapCopy runs the reference tool: bmaptool create + bmaptool copy.
func bmapCopy(t *testing.T, img, dst string) {
	t.Helper()
	bmap := img + ".bmap"
	out, err := exec.Command("bmaptool", "create", "-o", bmap, img).CombinedOutput()
	if err != nil {
		t.Fatalf("bmaptool create: %v\n%s", err, out)
	}
	out, err = exec.Command("bmaptool", "copy", "--bmap", bmap, img, dst).CombinedOutput()
	if err != nil {
		t.Fatalf("bmaptool copy: %v\n%s", err, out)
	}
}

func TestFlashMatchesBmaptool(t *testing.T) {
	testutil.RequireTool(t, "bmaptool")
	const size = 64 * mib
	img := sparseImage(t, size)
	imgData := read(t, img)

	t.Run("new file", func(t *testing.T) {
		ours := filepath.Join(t.TempDir(), "ours.img")
		ref := filepath.Join(t.TempDir(), "ref.img")
		res, err := Flash(t.Context(), img, ours, Options{})
		if err != nil {
			t.Fatal(err)
		}
		bmapCopy(t, img, ref)
		if !bytes.Equal(read(t, ours), imgData) {
			t.Fatal("flashed file differs from the image")
		}
		if !bytes.Equal(read(t, ours), read(t, ref)) {
			t.Fatal("flashed file differs from bmaptool copy's")
		}
		if res.Verified != res.DataBytes || res.DataBytes != allocated(t, img) {
			t.Fatalf("verified %d of %d data bytes (image has %d)", res.Verified, res.DataBytes, allocated(t, img))
		}
		// Sparse like the image (bmaptool writes mapped zeros; we skip
		// them on a fresh file, so ours is no bigger).
		if a, r := allocated(t, ours), allocated(t, ref); a > r || a > res.DataBytes {
			t.Fatalf("flashed file has %d allocated bytes, bmaptool's %d, image data %d", a, r, res.DataBytes)
		}
		if fi, _ := os.Stat(ours); fi.Size() != size {
			t.Fatalf("size %d, want %d", fi.Size(), size)
		}
	})

	// bmaptool truncates a regular-file target to the image, so it cannot
	// show device behaviour on a file; on a block device it writes the
	// mapped ranges and leaves the rest alone, which is what an existing
	// file standing in for a card must get from us.
	t.Run("used card keeps old data in holes, like bmaptool on a device", func(t *testing.T) {
		ours := garbage(t, size+mib)
		res, err := Flash(t.Context(), img, ours, Options{})
		if err != nil {
			t.Fatal(err)
		}
		want := bytes.Repeat([]byte{0xAA}, size+mib)
		f, _ := os.Open(img)
		defer f.Close()
		ext, _ := sparse.DataExtents(f)
		for _, e := range ext {
			copy(want[e.Off:e.End()], imgData[e.Off:e.End()])
		}
		if !bytes.Equal(read(t, ours), want) {
			t.Fatal("flash onto a used card is not: mapped ranges from the image, old data elsewhere")
		}
		if res.Written != res.DataBytes {
			t.Fatalf("wrote %d bytes, want every mapped byte (%d), zeros included", res.Written, res.DataBytes)
		}
	})

	t.Run("discard makes the card equal to the image", func(t *testing.T) {
		ours := garbage(t, size+mib)
		res, err := Flash(t.Context(), img, ours, Options{Discard: true})
		if err != nil {
			t.Fatal(err)
		}
		got := read(t, ours)
		if !bytes.Equal(got[:size], imgData) {
			t.Fatal("with --discard the image span differs from the image")
		}
		if got[size] != 0xAA {
			t.Fatal("discard went past the image's end")
		}
		if res.Discarded != size-res.DataBytes {
			t.Fatalf("discarded %d bytes, want the %d hole bytes", res.Discarded, size-res.DataBytes)
		}
	})
}

func TestFlashRefuses(t *testing.T) {
	img := sparseImage(t, 64*mib)
	tests := []struct {
		name   string
		target func(t *testing.T) string
		is     error
		want   string
	}{
		{"too small by one byte", func(t *testing.T) string { return garbage(t, 64*mib-1) }, ErrTooSmall, "needs 67108864 bytes"},
		{"onto the image itself", func(t *testing.T) string { return img }, ErrRefused, "onto itself"},
		{"a directory", func(t *testing.T) string { return t.TempDir() }, ErrBadTarget, "neither a block device nor a regular file"},
		{"a character device", func(t *testing.T) string { return "/dev/null" }, ErrBadTarget, "neither a block device nor a regular file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := tc.target(t)
			var before []byte
			if fi, err := os.Stat(dst); err == nil && fi.Mode().IsRegular() {
				before = read(t, dst)
			}
			_, err := Flash(t.Context(), img, dst, Options{Discard: true})
			if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Fatalf("got %v, want %v containing %q", err, tc.is, tc.want)
			}
			// The class is for errors.Is (exit 2), not for the message:
			// "...; use a card of at least N bytes: target too small".
			if tc.is != nil && strings.HasSuffix(err.Error(), tc.is.Error()) {
				t.Errorf("%q ends with the sentinel's text", err)
			}
			if before != nil && !bytes.Equal(before, read(t, dst)) {
				t.Fatal("a refused target was modified")
			}
		})
	}
}

// TestFlashSDCardSize is the acceptance case: a 31998345216-byte image and
// a card one byte short.
func TestFlashSDCardSize(t *testing.T) {
	const sd = 31998345216
	dir := t.TempDir()
	img, card := filepath.Join(dir, "sd.img"), filepath.Join(dir, "card")
	for _, c := range []struct {
		p string
		n int64
	}{{img, sd}, {card, sd - 1}} {
		f, err := os.Create(c.p)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteAt([]byte("data"), 0)
		if err := f.Truncate(c.n); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	_, err := Flash(t.Context(), img, card, Options{})
	if !errors.Is(err, ErrTooSmall) || !strings.Contains(err.Error(), "31998345216 bytes") {
		t.Fatalf("got %v, want a refusal naming 31998345216 bytes", err)
	}
	if os.Truncate(card, sd) != nil {
		t.Fatal("grow card")
	}
	res, err := Flash(t.Context(), img, card, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Written != res.DataBytes || res.DataBytes > 1*mib {
		t.Fatalf("wrote %d bytes for %d data bytes of a sparse 32 GB image", res.Written, res.DataBytes)
	}
}

// TestVerifyDetectsCorruption changes the target between write and read
// back: verify must name the range.
func TestVerifyDetectsCorruption(t *testing.T) {
	img := sparseImage(t, 64*mib)
	dst := filepath.Join(t.TempDir(), "out")
	if _, err := Flash(t.Context(), img, dst, Options{}); err != nil {
		t.Fatal(err)
	}
	f, _ := os.OpenFile(dst, os.O_RDWR, 0)
	defer f.Close()
	src, _ := os.Open(img)
	defer src.Close()
	ext, _ := sparse.DataExtents(src)
	// Correct sums first: verify passes.
	tg := &target{f: f}
	res := &Result{DataBytes: sparse.DataBytes(ext)}
	if _, err := write(t.Context(), src, &target{f: f}, ext, res); err != nil {
		t.Fatal(err)
	}
	sums, _ := write(t.Context(), src, tg, ext, &Result{DataBytes: res.DataBytes})
	if err := verify(t.Context(), tg, ext, sums, &Result{}); err != nil {
		t.Fatalf("verify of a good copy: %v", err)
	}
	f.WriteAt([]byte{0x55}, 21*mib)
	f.Sync()
	err := verify(t.Context(), tg, ext, sums, &Result{})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("bytes %d-%d", 20*mib, 31*mib)) {
		t.Fatalf("got %v, want a mismatch in bytes %d-%d", err, 20*mib, 31*mib)
	}
}
