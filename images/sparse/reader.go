package sparse

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/conpaas/cps/internal/input"
)

// Reader streams a file from the start to its size. Holes (as reported
// by SEEK_DATA/SEEK_HOLE) are produced as zeros without touching the disk, so
// a 2 GiB image with 300 MB of data reads only 300 MB. It stops with the
// context's error once ctx is done, which aborts an HTTP upload mid-stream.
type Reader struct {
	ctx  context.Context
	f    *os.File
	ext  []Extent
	size int64
	off  int64
	read int64 // bytes read from disk (for reports/benchmarks)
	// OnRead, if set, is told how many bytes were produced (progress).
	OnRead func(n int64)
}

// NewReader maps f's data extents once; f must not change meanwhile.
func NewReader(ctx context.Context, f *os.File) (*Reader, error) {
	size, err := input.Size(f)
	if err != nil {
		return nil, err
	}
	ext, err := DataExtents(f)
	if err != nil {
		return nil, err
	}
	return &Reader{ctx: ctx, f: f, ext: ext, size: size}, nil
}

// Size is the logical size of the stream.
func (r *Reader) Size() int64 { return r.size }

// DiskBytes is how many bytes were read from the file so far (data extents only).
func (r *Reader) DiskBytes() int64 { return r.read }

func (r *Reader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	if r.off >= r.size {
		return 0, io.EOF
	}
	if rem := r.size - r.off; int64(len(p)) > rem {
		p = p[:rem]
	}
	// Drop extents that end before off; the first remaining one decides
	// whether off is in data or in a hole.
	for len(r.ext) > 0 && r.ext[0].End() <= r.off {
		r.ext = r.ext[1:]
	}
	var n int
	if len(r.ext) > 0 && r.ext[0].Off <= r.off {
		e := r.ext[0]
		if m := e.End() - r.off; int64(len(p)) > m {
			p = p[:m]
		}
		var err error
		n, err = r.f.ReadAt(p, r.off)
		r.read += int64(n)
		if err == io.EOF && n > 0 {
			err = nil
		}
		if err != nil {
			return n, fmt.Errorf("read %s at %d: %w", r.f.Name(), r.off, err)
		}
	} else {
		hole := r.size - r.off
		if len(r.ext) > 0 {
			hole = r.ext[0].Off - r.off
		}
		if int64(len(p)) > hole {
			p = p[:hole]
		}
		n = len(p)
		clear(p) // cheaper than copying from a zero buffer
	}
	r.off += int64(n)
	if r.OnRead != nil {
		r.OnRead(int64(n))
	}
	return n, nil
}
