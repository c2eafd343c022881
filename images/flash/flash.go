// Package flash writes a sparse disk image to a block device (an SD card)
// or a file the way bmaptool does: only the image's mapped (data) ranges
// are written, the holes are skipped (or discarded on request), and the
// written ranges are read back and compared by checksum after fsync.
//
// Before writing anything it refuses a target that is too small, mounted,
// used as swap, or on the disk holding the root filesystem.
package flash

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/conpaas/cps/images/sparse"
	"github.com/conpaas/cps/internal/atomicfile"
	"github.com/conpaas/cps/internal/progress"
	"github.com/conpaas/cps/internal/readahead"
)

// chunk is the I/O size: big enough to stream at device speed, small
// enough that two in flight cost little memory.
const chunk = 8 << 20

// Options tune a flash.
type Options struct {
	// Discard deallocates the image's holes on the target (BLKDISCARD on a
	// block device, hole punching on a file) so they read as zeros (on
	// most cards) instead of keeping old content.
	Discard bool
	// NoVerify skips reading the written ranges back.
	NoVerify bool
	// Host is where the safety checks look (zero value: this machine).
	Host Host
}

// Result says what a flash did.
type Result struct {
	ImageSize int64
	Capacity  int64 // of the target (for a new file: the image size)
	Ranges    int   // mapped ranges of the image
	DataBytes int64 // mapped bytes of the image
	Written   int64 // bytes written to the target
	Discarded int64 // bytes discarded or punched
	Verified  int64 // bytes read back and compared
}

// ErrTooSmall is wrapped when the target cannot hold the image.
var ErrTooSmall = errors.New("target too small")

// ErrRefused is wrapped when the target is in use (mounted, swap, root disk).
var ErrRefused = errors.New("target in use")

// refusal is an error that errors.Is reports as kind (ErrTooSmall,
// ErrRefused, ErrBadTarget: exit 2) without appending kind's text, which
// only repeated the sentence ("...: target too small").
func refusal(kind error, format string, args ...any) error {
	return classed{fmt.Errorf(format, args...), kind}
}

// classed is err, classified as kind for errors.Is.
type classed struct {
	error
	kind error
}

func (c classed) Is(target error) bool { return target == c.kind }
func (c classed) Unwrap() error        { return c.error }

// ErrBadTarget is wrapped when the target cannot be a card: a directory,
// a character device, a pipe.
var ErrBadTarget = errors.New("not a block device or regular file")

// ErrBadImage is wrapped when the image is not a regular file (a pipe, a
// device, a directory): flash reads it twice.
var ErrBadImage = errors.New("image not a regular file")

// target is the opened destination.
type target struct {
	f        *os.File
	atomic   *atomicfile.File // set when flashing to a new regular file
	block    bool
	fresh    bool // reads as zeros everywhere: zero chunks need not be written
	capacity int64
}

// Flash writes image to dst (a block device, an existing file standing in
// for one, or a new file) and returns what it did.
func Flash(ctx context.Context, image, dst string, opt Options) (*Result, error) {
	// Looked at before it is opened: opening a FIFO blocks in the kernel
	// for a writer, and Ctrl-C could not end that.
	if st, err := os.Stat(image); err == nil && !st.Mode().IsRegular() {
		return nil, refusal(ErrBadImage, "image %s is not a regular file (%v): flash maps and reads the image file twice; save it to a file first", image, st.Mode().Type())
	}
	src, err := os.Open(image)
	if err != nil {
		return nil, fmt.Errorf("open image: %w", err)
	}
	defer src.Close()
	sst, err := src.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat image: %w", err)
	}
	if !sst.Mode().IsRegular() {
		return nil, refusal(ErrBadImage, "image %s is not a regular file: flash maps and reads the image file twice; save it to a file first", image)
	}
	size := sst.Size()
	if size == 0 {
		return nil, fmt.Errorf("image %s is empty", image)
	}
	ext, err := sparse.DataExtents(src)
	if err != nil {
		return nil, fmt.Errorf("map image: %w", err)
	}
	res := &Result{ImageSize: size, Ranges: len(ext), DataBytes: sparse.DataBytes(ext)}

	t, err := openTarget(dst, src, sst, size, opt.Host)
	if err != nil {
		return nil, err
	}
	res.Capacity = t.capacity
	ok := false
	defer func() {
		if t.atomic != nil {
			if !ok {
				t.atomic.Abort()
			}
			return
		}
		t.f.Close()
	}()

	// Past this point an existing target (a card) has lost its old
	// content: a failure must say what it now holds.
	partial := func(err error) error {
		if t.atomic != nil {
			return err // a new file: the temporary is removed, nothing is left
		}
		what := "failed"
		if ctx.Err() != nil {
			what = "interrupted"
		}
		if res.Written == 0 && res.Discarded == 0 {
			return fmt.Errorf("flash %s before writing anything; %s is unchanged: %w", what, dst, err)
		}
		return fmt.Errorf("flash %s after writing %d of %d bytes: %s now holds a partial image that will not boot; flash it again: %w", what, res.Written, res.DataBytes, dst, err)
	}
	sums, err := write(ctx, src, t, ext, res)
	if err != nil {
		return res, partial(err)
	}
	if opt.Discard && !t.fresh {
		if err := discardHoles(ctx, t, ext, size, res); err != nil {
			return res, partial(err)
		}
	}
	progress.Logf("flash: syncing %s", dst)
	if err := t.f.Sync(); err != nil {
		return res, partial(fmt.Errorf("sync %s: %w", dst, err))
	}
	if !opt.NoVerify {
		if err := verify(ctx, t, ext, sums, res); err != nil {
			if ctx.Err() != nil && t.atomic == nil {
				return res, fmt.Errorf("flash interrupted while reading %s back: the image was written and synced but not verified; flash it again, or check it: %w", dst, err)
			}
			return res, partial(err)
		}
	}
	if t.atomic != nil {
		if err := t.atomic.Commit(); err != nil {
			return res, err
		}
	}
	ok = true
	return res, nil
}

// openTarget checks dst and opens it for writing. Nothing is written here.
func openTarget(dst string, src *os.File, sst os.FileInfo, size int64, host Host) (*target, error) {
	st, err := os.Stat(dst)
	switch {
	case errors.Is(err, os.ErrNotExist):
		// A new file: written under a temporary name and renamed when
		// verified, so a failed flash leaves nothing behind.
		af, err := atomicfile.Create(dst, 0o644)
		if err != nil {
			return nil, err
		}
		if err := af.Truncate(size); err != nil {
			af.Abort()
			return nil, fmt.Errorf("size %s: %w", dst, err)
		}
		return &target{f: af.File, atomic: af, fresh: true, capacity: size}, nil
	case err != nil:
		return nil, fmt.Errorf("target: %w", err)
	}
	if os.SameFile(st, sst) {
		return nil, refusal(ErrRefused, "refusing to write %s onto itself", dst)
	}
	if st.Mode()&os.ModeDevice != 0 && st.Mode()&os.ModeCharDevice == 0 {
		sys, ok := st.Sys().(*unix.Stat_t)
		if !ok {
			var u unix.Stat_t
			if err := unix.Stat(dst, &u); err != nil {
				return nil, fmt.Errorf("stat %s: %w", dst, err)
			}
			sys = &u
		}
		if err := host.CheckBlockDevice(dst, sys.Rdev); err != nil {
			return nil, classed{err, ErrRefused}
		}
		// O_EXCL on a block device: the kernel refuses it while mounted
		// or held by another driver, closing the race with the checks.
		f, err := os.OpenFile(dst, os.O_RDWR|unix.O_EXCL, 0)
		if err != nil {
			if errors.Is(err, unix.EBUSY) {
				return nil, refusal(ErrRefused, "refusing to write %s: it is busy (mounted, held by device-mapper/md, or opened exclusively)", dst)
			}
			return nil, fmt.Errorf("open %s: %w", dst, err)
		}
		c, err := unix.IoctlGetUint64(int(f.Fd()), unix.BLKGETSIZE64)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("size of %s: %w", dst, err)
		}
		t := &target{f: f, block: true, capacity: int64(c)}
		if err := t.fits(dst, size); err != nil {
			f.Close()
			return nil, err
		}
		return t, nil
	}
	if !st.Mode().IsRegular() {
		return nil, refusal(ErrBadTarget, "%s is neither a block device nor a regular file; give the SD card's device, e.g. /dev/sdX (see lsblk)", dst)
	}
	// An existing regular file stands in for a device: its size is the
	// capacity and its old content outside the image's data stays, as on
	// a card. An empty one is simply sized to the image.
	f, err := os.OpenFile(dst, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dst, err)
	}
	if st.Size() == 0 {
		if err := f.Truncate(size); err != nil {
			f.Close()
			return nil, fmt.Errorf("size %s: %w", dst, err)
		}
		return &target{f: f, fresh: true, capacity: size}, nil
	}
	t := &target{f: f, capacity: st.Size()}
	if err := t.fits(dst, size); err != nil {
		f.Close()
		return nil, err
	}
	return t, nil
}

func (t *target) fits(dst string, size int64) error {
	if t.capacity < size {
		return refusal(ErrTooSmall, "%s holds %d bytes but the image needs %d bytes; use a card of at least %d bytes (%.1f GB)",
			dst, t.capacity, size, size, float64(size)/1e9)
	}
	return nil
}

// write copies the image's extents to the target with the read (and
// checksum) of the next chunk overlapping the write of the current one. It
// returns one SHA-256 per extent, of the bytes as read from the image.
func write(ctx context.Context, src *os.File, t *target, ext []sparse.Extent, res *Result) ([][]byte, error) {
	bar := progress.New("flash", res.DataBytes)
	defer bar.Finish()
	sums := make([][]byte, len(ext))
	hashes := make([]hash.Hash, len(ext))
	read := readahead.Extents(src, ext)
	fill := func(b []byte) (readahead.Chunk, error) {
		c, err := read(b)
		if err == io.EOF {
			return c, err
		}
		if err != nil {
			return c, fmt.Errorf("read %s: %w", src.Name(), err)
		}
		if hashes[c.Ext] == nil {
			hashes[c.Ext] = sha256.New()
		}
		hashes[c.Ext].Write(c.B)
		return c, nil
	}
	err := readahead.Run(ctx, chunk, 3, fill, func(c readahead.Chunk) error {
		if t.fresh && sparse.IsZero(c.B) {
			// The new target reads as zeros already; keep it sparse.
		} else if _, err := t.f.WriteAt(c.B, c.Off); err != nil {
			return fmt.Errorf("write %s at %d: %w", t.f.Name(), c.Off, err)
		} else {
			res.Written += int64(len(c.B))
		}
		bar.Add64(int64(len(c.B)))
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i, h := range hashes {
		if h != nil {
			sums[i] = h.Sum(nil)
		}
	}
	return sums, nil
}

// discardHoles deallocates the parts of the image's span that are holes.
func discardHoles(ctx context.Context, t *target, ext []sparse.Extent, size int64, res *Result) error {
	var pos int64
	gaps := []sparse.Extent{}
	for _, e := range ext {
		if e.Off > pos {
			gaps = append(gaps, sparse.Extent{Off: pos, Len: e.Off - pos})
		}
		pos = e.End()
	}
	if pos < size {
		gaps = append(gaps, sparse.Extent{Off: pos, Len: size - pos})
	}
	for _, g := range gaps {
		if err := ctx.Err(); err != nil {
			return err
		}
		if t.block {
			// BLKDISCARD wants 512-byte units; SEEK_HOLE boundaries are
			// filesystem blocks, so only the last gap may need trimming.
			off, end := (g.Off+511)/512*512, g.End()/512*512
			if end <= off {
				continue
			}
			r := [2]uint64{uint64(off), uint64(end - off)}
			if _, _, e := unix.Syscall(unix.SYS_IOCTL, t.f.Fd(), unix.BLKDISCARD, uintptr(unsafe.Pointer(&r[0]))); e != 0 {
				if e == unix.EOPNOTSUPP {
					progress.Logf("flash: %s does not support discard; holes keep their old content", t.f.Name())
					return nil
				}
				return fmt.Errorf("discard %s at %d+%d: %w", t.f.Name(), off, end-off, e)
			}
			res.Discarded += end - off
			continue
		}
		if err := sparse.Punch(t.f, g.Off, g.Len); err != nil {
			return err
		}
		res.Discarded += g.Len
	}
	return nil
}

// verify drops the target's cached pages, so the comparison sees what
// reached the device rather than what is still in memory, then reads every
// written range back and compares its SHA-256. Reading the next chunk
// overlaps hashing the current one.
func verify(ctx context.Context, t *target, ext []sparse.Extent, sums [][]byte, res *Result) error {
	_ = unix.Fadvise(int(t.f.Fd()), 0, 0, unix.FADV_DONTNEED) // best effort
	bar := progress.New("verify", res.DataBytes)
	defer bar.Finish()
	h, cur := sha256.New(), -1
	check := func() error {
		if cur < 0 {
			return nil
		}
		if got := h.Sum(nil); !bytes.Equal(got, sums[cur]) {
			e := ext[cur]
			return fmt.Errorf("verify %s: bytes %d-%d read back differ from the image (sha256 %x, want %x); the card may be faulty or fake-capacity", t.f.Name(), e.Off, e.End(), got, sums[cur])
		}
		h.Reset()
		return nil
	}
	read := readahead.Extents(t.f, ext)
	fill := func(b []byte) (readahead.Chunk, error) {
		c, err := read(b)
		if err != nil && err != io.EOF {
			err = fmt.Errorf("read back %s: %w", t.f.Name(), err)
		}
		return c, err
	}
	err := readahead.Run(ctx, chunk, 3, fill, func(c readahead.Chunk) error {
		if c.Ext != cur {
			if err := check(); err != nil {
				return err
			}
			cur = c.Ext
		}
		h.Write(c.B)
		bar.Add64(int64(len(c.B)))
		res.Verified += int64(len(c.B))
		return nil
	})
	if err != nil {
		return err
	}
	return check()
}
