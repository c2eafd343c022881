package readahead

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/conpaas/cps/images/sparse"
)

func TestExtents(t *testing.T) {
	src := make([]byte, 100)
	for i := range src {
		src[i] = byte(i)
	}
	ext := []sparse.Extent{{Off: 0, Len: 10}, {Off: 20, Len: 0}, {Off: 30, Len: 25}, {Off: 90, Len: 10}}
	var got []Chunk
	err := Run(context.Background(), 8, 2, Extents(bytes.NewReader(src), ext), func(c Chunk) error {
		got = append(got, Chunk{B: append([]byte(nil), c.B...), Off: c.Off, Ext: c.Ext})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		off int64
		n   int
		ext int
	}{{0, 8, 0}, {8, 2, 0}, {30, 8, 2}, {38, 8, 2}, {46, 8, 2}, {54, 1, 2}, {90, 8, 3}, {98, 2, 3}}
	if len(got) != len(want) {
		t.Fatalf("%d chunks, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		c := got[i]
		if c.Off != w.off || len(c.B) != w.n || c.Ext != w.ext || !bytes.Equal(c.B, src[w.off:w.off+int64(w.n)]) {
			t.Errorf("chunk %d: %+v, want off %d len %d ext %d", i, c, w.off, w.n, w.ext)
		}
	}
}

func TestStream(t *testing.T) {
	src := bytes.Repeat([]byte("0123456789"), 10)
	var got []byte
	if err := Run(context.Background(), 16, 3, Stream(bytes.NewReader(src)), func(c Chunk) error {
		if c.Off != int64(len(got)) {
			t.Errorf("chunk at %d after %d bytes", c.Off, len(got))
		}
		got = append(got, c.B...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, src) {
		t.Fatal("streamed bytes differ")
	}
}

// A failing side stops both, and Run returns that error, not the
// cancellation it caused.
func TestErrors(t *testing.T) {
	boom := errors.New("boom")
	src := bytes.NewReader(make([]byte, 1<<20))
	n := 0
	err := Run(context.Background(), 1024, 3, Stream(src), func(Chunk) error {
		if n++; n == 5 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || n != 5 {
		t.Errorf("consumer error: %v after %d chunks", err, n)
	}
	err = Run(context.Background(), 1024, 3, func([]byte) (Chunk, error) { return Chunk{}, boom }, func(Chunk) error { return nil })
	if !errors.Is(err, boom) {
		t.Errorf("reader error: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	err = Run(ctx, 1024, 3, Stream(io.MultiReader(src, bytes.NewReader(make([]byte, 1<<20)))), func(Chunk) error { cancel(); return nil })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: %v", err)
	}
}
