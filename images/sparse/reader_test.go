package sparse

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestReader checks that the stream equals the file byte for byte for
// layouts with leading, inner and trailing holes, and that only data extents
// are read from disk.
func TestReader(t *testing.T) {
	const mib = 1 << 20
	cases := []struct {
		name string
		size int64
		data []int64 // offsets of 1 MiB data blocks
	}{
		{"all-hole", 8 * mib, nil},
		{"leading-data", 8 * mib, []int64{0}},
		{"inner", 16 * mib, []int64{3 * mib, 9 * mib}},
		{"trailing", 8 * mib, []int64{7 * mib}},
		{"odd-size", 5*mib + 123, []int64{2 * mib, 4 * mib}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "img")
			f, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := f.Truncate(c.size); err != nil {
				t.Fatal(err)
			}
			want := make([]byte, c.size)
			for i, off := range c.data {
				blk := bytes.Repeat([]byte{byte(i + 1)}, mib)
				if off+mib > c.size {
					blk = blk[:c.size-off]
				}
				copy(want[off:], blk)
				if _, err := f.WriteAt(blk, off); err != nil {
					t.Fatal(err)
				}
			}
			r, err := NewReader(context.Background(), f)
			if err != nil {
				t.Fatal(err)
			}
			var produced int64
			r.OnRead = func(n int64) { produced += n }
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("stream differs from file content")
			}
			if produced != c.size {
				t.Errorf("progress reported %d bytes, want %d", produced, c.size)
			}
			// The filesystem may round data extents up to its block size,
			// never beyond the data we wrote plus one block per extent.
			if max := int64(len(c.data))*(mib+64*1024) + 0; r.DiskBytes() > max {
				t.Errorf("read %d bytes from disk, want <= %d (holes must not be read)", r.DiskBytes(), max)
			}
		})
	}
}

func TestReaderCancel(t *testing.T) {
	p := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(p, make([]byte, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithCancel(context.Background())
	r, err := NewReader(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	if _, err := r.Read(buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := r.Read(buf); !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %v, want context.Canceled", err)
	}
}
