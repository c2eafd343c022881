// Package readahead overlaps reading a file with using what was read: a
// goroutine fills a few large buffers ahead while the caller consumes them
// in order. Whatever the reading side does to a chunk (hashing it) also
// overlaps the consumer's work. Flashing an SD card (write, then read back
// and compare) and uploading an image to Glance use it; each lost ~40% of
// its throughput reading and hashing in the consumer's small steps.
package readahead

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/conpaas/cps/images/sparse"
)

// Chunk is one buffer's worth of the source.
type Chunk struct {
	B   []byte // the bytes read; valid until consume returns
	Off int64  // where they are in the source
	Ext int    // the index of the extent they belong to (Extents)
}

// Run calls fill on its own goroutine with free buffers of size bytes, up
// to depth of them ahead, and consume on the calling goroutine with each
// filled chunk, in order. fill returns the chunk it put in the buffer, or
// io.EOF when the source is done. Run stops at the first error of either
// (returned) or when ctx is done; the reading goroutine has ended when Run
// returns.
func Run(ctx context.Context, size, depth int, fill func(b []byte) (Chunk, error), consume func(Chunk) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	free := make(chan []byte, depth+1)
	for range depth + 1 {
		free <- make([]byte, size)
	}
	full := make(chan Chunk, depth)
	rerr := make(chan error, 1)
	go func() {
		defer close(full)
		for {
			var b []byte
			select {
			case b = <-free:
			case <-ctx.Done():
				rerr <- ctx.Err()
				return
			}
			c, err := fill(b)
			if err == io.EOF {
				rerr <- nil
				return
			}
			if err != nil {
				rerr <- err
				return
			}
			full <- c
		}
	}()
	var cerr error
	for c := range full {
		if cerr == nil {
			if cerr = consume(c); cerr != nil {
				cancel()
			}
		}
		free <- c.B[:cap(c.B)]
	}
	// After a consumer error the reader only reports the cancellation.
	if err := <-rerr; cerr == nil {
		cerr = err
	}
	return cerr
}

// Extents is a fill function for Run that reads the extents ext of src in
// order, each cut into chunks no bigger than the buffer.
func Extents(src io.ReaderAt, ext []sparse.Extent) func(b []byte) (Chunk, error) {
	i, off := 0, int64(-1)
	return func(b []byte) (Chunk, error) {
		for i < len(ext) && (ext[i].Len == 0 || off >= ext[i].End()) {
			i, off = i+1, -1
		}
		if i == len(ext) {
			return Chunk{}, io.EOF
		}
		if off < 0 {
			off = ext[i].Off
		}
		n := min(int64(len(b)), ext[i].End()-off)
		if _, err := src.ReadAt(b[:n], off); err != nil && !errors.Is(err, io.EOF) {
			return Chunk{}, fmt.Errorf("read at %d: %w", off, err)
		}
		c := Chunk{B: b[:n], Off: off, Ext: i}
		off += n
		return c, nil
	}
}

// Stream is a fill function for Run that reads src from start to end,
// each chunk a full buffer but the last.
func Stream(src io.Reader) func(b []byte) (Chunk, error) {
	var off int64
	return func(b []byte) (Chunk, error) {
		n, err := io.ReadFull(src, b)
		if n == 0 && (err == io.EOF || err == io.ErrUnexpectedEOF) {
			return Chunk{}, io.EOF
		}
		if err != nil && err != io.ErrUnexpectedEOF {
			return Chunk{}, err
		}
		c := Chunk{B: b[:n], Off: off}
		off += int64(n)
		return c, nil
	}
}
