package sdcard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/diskfs/go-diskfs/partition/mbr"
	"golang.org/x/sys/unix"

	"github.com/conpaas/cps/images/checksum"
	"github.com/conpaas/cps/images/ptable"
	"github.com/conpaas/cps/images/sparse"
	"github.com/conpaas/cps/internal/atomicfile"
	"github.com/conpaas/cps/internal/progress"
	"github.com/conpaas/cps/plan"
)

// ResizeResult describes a resized image.
type ResizeResult struct {
	OldSize, NewSize int64
	// Partitions is the new layout, in table order.
	Partitions []plan.Partition
	// Copied is the number of bytes written to produce the new image.
	Copied int64
	// Already is set when the image had the size already (an earlier run
	// finished the image); only its side files were brought up to date.
	Already bool
}

// ErrBadSize is wrapped when the requested size cannot be used (or the
// image is not a file): errors.Is tells a usage error (exit 2).
var ErrBadSize = errors.New("bad size")

// badSize is a refusal that errors.Is reports as ErrBadSize without
// appending its text: "/dev/null is not a regular file ...: bad size" read
// as if the size were at fault.
func badSize(format string, args ...any) error {
	return badSizeError{fmt.Errorf(format, args...)}
}

type badSizeError struct{ error }

func (badSizeError) Is(target error) bool { return target == ErrBadSize }

// Resize grows the SD-card image at path to newSize bytes for a bigger card,
// offline: the swap partition moves to the end of the new size (its start
// rounded down to align), the ext4 partition before it grows up to the swap
// and its filesystem is grown with resize2fs. The boot partition, the MBR
// disk signature (the PARTUUIDs in cmdline.txt and fstab) and every other
// byte stay as they were.
//
// The new image is assembled in a temporary file next to path and renamed
// over it only after e2fsck passes, so a failure or an interruption leaves
// the original untouched. Checksum side files (path.md5, path.sha256, ...)
// that exist are recomputed from the new image before it is renamed, and
// renamed right after it; if a run dies between the two renames, running
// it again with the same size finds the image done and refreshes them. A
// symbolic link is followed (the link stays), and the image is locked so a
// concurrent resize of it refuses.
func Resize(ctx context.Context, ui *progress.UI, path string, newSize, align int64) (res *ResizeResult, err error) {
	defer func() {
		if err != nil && ctx.Err() != nil {
			err = fmt.Errorf("resize of %s interrupted; the image is unchanged: %w", path, ctx.Err())
		}
	}()
	if align <= 0 {
		align = DefaultAlignment
	}
	if align&(align-1) != 0 || align%ptable.Sector != 0 {
		return nil, badSize("alignment %d is not a power of two of at least 512 bytes; use e.g. 4MiB", align)
	}
	if path, err = atomicfile.Resolve(path); err != nil {
		return nil, err
	}
	src, st, err := openLocked(path)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	if !st.Mode().IsRegular() {
		return nil, badSize("%s is not a regular file; sdcard resize grows an image file before it is flashed", path)
	}
	oldSize := st.Size()
	if newSize%ptable.Sector != 0 {
		return nil, badSize("size %d is not a multiple of %d bytes; give the card's size in bytes (blockdev --getsize64)", newSize, ptable.Sector)
	}
	if newSize < oldSize {
		return nil, badSize("size %d is smaller than the image (%d bytes); shrinking is not supported, give at least %d", newSize, oldSize, oldSize)
	}
	if newSize == oldSize {
		// Done already (by an earlier run, maybe one that died before
		// its side files were renamed): make sure they describe it.
		if err := refreshSums(ctx, path); err != nil {
			return nil, err
		}
		return &ResizeResult{OldSize: oldSize, NewSize: newSize, Already: true}, nil
	}
	if newSize/ptable.Sector > 1<<32-1 {
		return nil, badSize("size %d is over the 2 TiB an MBR partition table can address", newSize)
	}
	table, parts, err := ptable.Read(src)
	if err != nil {
		return nil, err
	}
	if table != ptable.MBR {
		return nil, fmt.Errorf("%s has a %s partition table; sdcard resize handles the MBR tables of Raspberry Pi SD-card images", path, table)
	}
	mt, err := mbr.Read(src, ptable.Sector, ptable.Sector)
	if err != nil {
		return nil, fmt.Errorf("read MBR of %s: %w", path, err)
	}
	root, swap, err := resizable(parts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for i, p := range parts {
		// A truncated image (an interrupted download or copy) would be
		// grown with its missing tail read as zeros, and its side files
		// recomputed over the loss: refuse it.
		if p.End > oldSize {
			return nil, fmt.Errorf("partition %d of %s ends at byte %d, past the end of the %d-byte file: the image is truncated (an interrupted download or copy?); get it again and check it with cpsimage verify", i+1, path, p.End, oldSize)
		}
	}
	for i, p := range parts {
		if p.Start%align != 0 {
			return nil, fmt.Errorf("partition %d of %s starts at byte %d, not on a %d-byte boundary; pass the image's alignment with --align", i+1, path, p.Start, align)
		}
	}

	// New layout.
	np := append([]plan.Partition(nil), parts...)
	rootEnd := newSize / align * align
	if swap >= 0 {
		n := parts[swap].End - parts[swap].Start
		np[swap].Start = (newSize - n) / align * align
		np[swap].End = np[swap].Start + n
		rootEnd = np[swap].Start
	}
	np[root].End = rootEnd
	if rootEnd <= parts[root].End {
		need := parts[root].End + (parts[root].End - rootEnd) + align
		return nil, badSize("size %d leaves no room to grow the root partition (alignment %d); give at least %d", newSize, align, need)
	}

	res = &ResizeResult{OldSize: oldSize, NewSize: newSize, Partitions: np}
	out, err := atomicfile.Create(path, st.Mode().Perm())
	if err != nil {
		return nil, err
	}
	defer out.Abort()
	if err := out.Truncate(newSize); err != nil {
		return nil, fmt.Errorf("size %s: %w", out.Name(), err)
	}
	ext, err := sparse.DataExtents(src)
	if err != nil {
		return nil, fmt.Errorf("map %s: %w", path, err)
	}
	bar := ui.New("resize", sparse.DataBytes(ext))
	defer bar.Finish()

	// Everything before the root partition (MBR, boot partition) stays.
	n, err := copyExtents(ctx, out.File, 0, src, 0, parts[root].Start, ext, bar)
	res.Copied += n
	if err != nil {
		return nil, err
	}
	// The swap area moves; its content is only the header (swap holds
	// nothing across boots), but every data byte is moved all the same.
	if swap >= 0 {
		n, err := copyExtents(ctx, out.File, np[swap].Start, src, parts[swap].Start, parts[swap].End-parts[swap].Start, ext, bar)
		res.Copied += n
		if err != nil {
			return nil, err
		}
	}
	n, err = growExt4(ctx, ui, path, out.File, src, parts[root], np[root].End, ext, bar)
	res.Copied += n
	if err != nil {
		return nil, err
	}

	// The table: only the moved entries change; the disk signature, types
	// and boot flag stay.
	for _, p := range mt.Partitions {
		for i := range parts {
			if p == nil || int64(p.Start)*ptable.Sector != parts[i].Start {
				continue
			}
			p.Start = uint32(np[i].Start / ptable.Sector)
			p.Size = uint32((np[i].End - np[i].Start) / ptable.Sector)
			setCHS(p)
			break
		}
	}
	if err := mt.Write(out.File, newSize); err != nil {
		return nil, fmt.Errorf("write MBR: %w", err)
	}
	bar.Finish()
	sides, err := newSums(ctx, path, out.Name())
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, f := range sides {
			f.Abort()
		}
	}()
	if err := out.Commit(); err != nil {
		return nil, err
	}
	for _, f := range sides {
		if err := f.Commit(); err != nil {
			return res, fmt.Errorf("%s is resized but %w; run the same resize again to write the side files", path, err)
		}
	}
	return res, nil
}

// openLocked opens the image and takes an exclusive flock on it, so that
// a second resize of the same image refuses instead of both working on
// the old bytes. The lock is on the inode: after waiting for it the path
// must still name the locked file (another run may have renamed its
// result over it).
func openLocked(path string) (*os.File, os.FileInfo, error) {
	// Looked at before it is opened: opening a FIFO blocks in the kernel
	// for a writer, and Ctrl-C could not end that.
	if st, err := os.Stat(path); err == nil && !st.Mode().IsRegular() {
		return nil, nil, badSize("%s is not a regular file; sdcard resize grows an image file before it is flashed", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("open image: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, nil, fmt.Errorf("another process is resizing %s (it holds the image's lock); wait for it to finish", path)
		}
		return nil, nil, fmt.Errorf("lock %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("stat image: %w", err)
	}
	if now, err := os.Stat(path); err != nil || !os.SameFile(now, st) {
		f.Close()
		return nil, nil, fmt.Errorf("%s was replaced while being opened (another resize finished?); run again", path)
	}
	return f, st, nil
}

// resizable finds the partition to grow (the last ext4 one) and the swap
// partition after it (-1 if none); nothing else may follow the root.
func resizable(parts []plan.Partition) (root, swap int, err error) {
	root, swap = -1, -1
	for i, p := range parts {
		if p.FS == "ext4" {
			root = i
		}
	}
	if root < 0 {
		return 0, 0, fmt.Errorf("no Linux (ext4) partition to grow")
	}
	for i, p := range parts {
		if p.Start <= parts[root].Start {
			continue
		}
		if p.FS != "swap" || swap >= 0 {
			return 0, 0, fmt.Errorf("partition %d (%s) follows the root partition; only a swap partition may, so it can move to the end", i+1, orUnknown(p.FS))
		}
		swap = i
	}
	return root, swap, nil
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown type"
	}
	return s
}

// setCHS sets the CHS fields to the "beyond CHS" marker LBA-only tools and
// firmware expect for partitions past 8 GiB (every SD root and swap is).
func setCHS(p *mbr.Partition) {
	const chsLimit = 1024 * 255 * 63
	if p.Start >= chsLimit {
		p.StartHead, p.StartSector, p.StartCylinder = 0xfe, 0xff, 0xff
	}
	if uint64(p.Start)+uint64(p.Size)-1 >= chsLimit {
		p.EndHead, p.EndSector, p.EndCylinder = 0xfe, 0xff, 0xff
	}
}

// copyExtents copies the data extents of src within [srcOff, srcOff+n) to
// dst at dstOff + (offset - srcOff), skipping zero blocks.
func copyExtents(ctx context.Context, dst *os.File, dstOff int64, src *os.File, srcOff, n int64, ext []sparse.Extent, bar *progress.Bar) (int64, error) {
	var written int64
	end := srcOff + n
	for _, e := range ext {
		if err := ctx.Err(); err != nil {
			return written, err
		}
		s, t := max(e.Off, srcOff), min(e.End(), end)
		if s >= t {
			continue
		}
		w, err := sparse.CopyRange(dst, dstOff+(s-srcOff), src, s, t-s)
		written += w
		bar.Add64(t - s)
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

// growExt4 copies the root filesystem into a sparse file of the new
// partition size, checks it, grows it with resize2fs, checks it again and
// copies it into dst. resize2fs cannot work at an offset inside the image:
// on a regular file it truncates the file to the filesystem's size, which
// would cut the image.
func growExt4(ctx context.Context, ui *progress.UI, image string, dst, src *os.File, root plan.Partition, newEnd int64, ext []sparse.Extent, bar *progress.Bar) (int64, error) {
	// The image's directory has room for the image; a scratch file there
	// left by a killed run is removed by the next one.
	tmp, err := atomicfile.Scratch(image, "root")
	if err != nil {
		return 0, fmt.Errorf("resize: %w", err)
	}
	defer func() { tmp.Close(); os.Remove(tmp.Name()) }()
	newLen := newEnd - root.Start
	if err := tmp.Truncate(newLen); err != nil {
		return 0, fmt.Errorf("resize: %w", err)
	}
	written, err := copyExtents(ctx, tmp, 0, src, root.Start, root.End-root.Start, ext, bar)
	if err != nil {
		return written, err
	}
	if err := E2fsck(ctx, tmp.Name()); err != nil {
		if ctx.Err() != nil {
			return written, err
		}
		// The check ran on a scratch copy, deleted on return: name the
		// image and the partition's offset, which the user can repair.
		msg := strings.ReplaceAll(err.Error(), tmp.Name(), "(a copy of it)")
		return written, fmt.Errorf("the root filesystem of %s (the partition at byte %d) is not clean, so it was not resized; repair it first (e2fsck -f on that partition, or on the card's root partition) and run resize again. %s", image, root.Start, msg)
	}
	ui.Logf("resize: growing the root filesystem from %d to %d bytes", root.End-root.Start, newLen)
	cmd := exec.CommandContext(ctx, "resize2fs", tmp.Name(), strconv.FormatInt(newLen/1024, 10)+"K")
	if b, err := cmd.CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			return written, fmt.Errorf("interrupted while resize2fs grew the root filesystem: %w", ctx.Err())
		}
		return written, fmt.Errorf("resize2fs: %v: %s", err, strings.TrimSpace(string(b)))
	}
	if err := E2fsck(ctx, tmp.Name()); err != nil {
		return written, fmt.Errorf("after resize2fs: %w", err)
	}
	w, err := sparse.CopyFile(dst, root.Start, tmp)
	written += w
	if err != nil {
		return written, fmt.Errorf("resize: %w", err)
	}
	return written, nil
}

// E2fsck runs a forced read-only check (e2fsck -fn) of the ext4 filesystem
// at path (a path may carry e2fsprogs' "?offset=BYTES" suffix to check one
// inside a disk image) and fails with its report unless it is clean.
func E2fsck(ctx context.Context, path string) error {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "e2fsck", "-fn", path)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return fmt.Errorf("e2fsck is not installed; run scripts/deps.sh or apt-get install e2fsprogs")
		}
		if ctx.Err() != nil {
			// Killed by us, not a verdict on the filesystem.
			return fmt.Errorf("interrupted while e2fsck checked the filesystem: %w", ctx.Err())
		}
		// The verdict is at the end; a damaged filesystem can make e2fsck
		// print thousands of lines.
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) > 8 {
			lines = append([]string{fmt.Sprintf("(%d lines before)", len(lines)-8)}, lines[len(lines)-8:]...)
		}
		return fmt.Errorf("e2fsck -fn %s: %v: %s", path, err, strings.Join(lines, "\n"))
	}
	return nil
}

// sideAlgos are the algorithms of the checksum side files path has.
func sideAlgos(path string) []checksum.Algo {
	var algos []checksum.Algo
	for _, a := range checksum.All {
		if _, err := os.Stat(checksum.SideFile(path, a)); err == nil {
			algos = append(algos, a)
		}
	}
	return algos
}

// newSums hashes the new image (at tmp, to be renamed to path) and
// prepares, uncommitted, the side files of path that exist, since they
// describe the old bytes.
func newSums(ctx context.Context, path, tmp string) ([]*atomicfile.File, error) {
	algos := sideAlgos(path)
	if len(algos) == 0 {
		return nil, nil
	}
	s, err := checksum.File(ctx, tmp, checksum.Options{Algos: algos})
	if err != nil {
		return nil, fmt.Errorf("checksum resized image: %w", err)
	}
	var out []*atomicfile.File
	for _, a := range algos {
		f, err := atomicfile.Create(checksum.SideFile(path, a), 0o644)
		if err == nil {
			_, err = f.WriteString(checksum.Line(s.Get(a), filepath.Base(path)))
		}
		if err != nil {
			for _, o := range out {
				o.Abort()
			}
			return nil, fmt.Errorf("write %s side file: %w", a, err)
		}
		out = append(out, f)
	}
	return out, nil
}

// refreshSums recomputes the checksum side files of path that exist.
func refreshSums(ctx context.Context, path string) error {
	algos := sideAlgos(path)
	if len(algos) == 0 {
		return nil
	}
	s, err := checksum.File(ctx, path, checksum.Options{Algos: algos})
	if err != nil {
		return fmt.Errorf("checksum image: %w", err)
	}
	return checksum.WriteSideFiles(path, s, algos...)
}
