// Package sparse finds the data extents of files with holes (SEEK_DATA /
// SEEK_HOLE) so that building, hashing, converting, flashing and uploading a
// 32 GB SD-card image touches only the bytes that are really there.
package sparse

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/conpaas/cps/internal/input"
)

// Extent is a byte range [Off, Off+Len) of a file.
type Extent struct {
	Off int64
	Len int64
}

// End is the first byte after the extent.
func (e Extent) End() int64 { return e.Off + e.Len }

// DataExtents returns the data extents of f in file order. On a filesystem
// without SEEK_DATA support the whole file is one extent, which is correct,
// only slower. Extents are reported as the filesystem knows them: a data
// extent may still contain zeros (callers that care use IsZero).
func DataExtents(f *os.File) ([]Extent, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	size := st.Size()
	if !st.Mode().IsRegular() {
		// A block device has no hole information: all of it is data. A
		// stream cannot be mapped at all.
		n, err := input.Size(f)
		if err != nil {
			return nil, err
		}
		if n < 0 {
			return nil, fmt.Errorf("%s is a pipe or character device; it has to be a file or block device: %w", f.Name(), input.ErrNotSeekable)
		}
		if n == 0 {
			return nil, nil
		}
		return []Extent{{0, n}}, nil
	}
	var out []Extent
	fd := int(f.Fd())
	off := int64(0)
	for off < size {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err != nil {
			if errors.Is(err, unix.ENXIO) { // no data after off: the rest is a hole
				break
			}
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
				return []Extent{{off, size - off}}, nil
			}
			return nil, fmt.Errorf("seek data in %s: %w", f.Name(), err)
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("seek hole in %s: %w", f.Name(), err)
		}
		if hole > size {
			hole = size
		}
		if hole > data {
			out = append(out, Extent{data, hole - data})
		}
		off = hole
	}
	// Leave the file offset where callers expect it.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return out, nil
}

// DataBytes is the total length of extents.
func DataBytes(ext []Extent) int64 {
	var n int64
	for _, e := range ext {
		n += e.Len
	}
	return n
}

// IsZero reports whether b is all zero bytes. It compares 8 bytes at a time;
// this is on the hot path of every sparse writer.
func IsZero(b []byte) bool {
	for len(b) >= 64 {
		for i := 0; i < 64; i++ {
			if b[i] != 0 {
				return false
			}
		}
		b = b[64:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Punch deallocates [off, off+n) of f, leaving a hole that reads as zeros.
func Punch(f *os.File, off, n int64) error {
	if n <= 0 {
		return nil
	}
	err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	if err != nil {
		return fmt.Errorf("punch hole in %s at %d+%d: %w", f.Name(), off, n, err)
	}
	return nil
}

// CopyRange copies n bytes from src at srcOff to dst at dstOff without
// writing all-zero blocks (dst must read as zeros there already, e.g. a fresh
// sparse file). It returns the bytes actually written.
func CopyRange(dst *os.File, dstOff int64, src *os.File, srcOff, n int64) (int64, error) {
	buf := make([]byte, 1<<20)
	var written int64
	for n > 0 {
		c := int64(len(buf))
		if c > n {
			c = n
		}
		r, err := src.ReadAt(buf[:c], srcOff)
		if err != nil && !(errors.Is(err, io.EOF) && int64(r) == c) {
			return written, fmt.Errorf("read %s at %d: %w", src.Name(), srcOff, err)
		}
		if !IsZero(buf[:c]) {
			w, err := dst.WriteAt(buf[:c], dstOff)
			written += int64(w)
			if err != nil {
				return written, fmt.Errorf("write %s at %d: %w", dst.Name(), dstOff, err)
			}
		}
		srcOff += c
		dstOff += c
		n -= c
	}
	return written, nil
}

// CopyFile copies the data extents of src into dst at dstOff (dst reads as
// zeros elsewhere). It is how a filesystem image made in its own file lands
// inside a partition of a disk image without writing its holes.
func CopyFile(dst *os.File, dstOff int64, src *os.File) (int64, error) {
	ext, err := DataExtents(src)
	if err != nil {
		return 0, err
	}
	var written int64
	for _, e := range ext {
		w, err := CopyRange(dst, dstOff+e.Off, src, e.Off, e.Len)
		written += w
		if err != nil {
			return written, err
		}
	}
	return written, nil
}
