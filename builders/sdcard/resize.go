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
}

// ErrBadSize is wrapped when the requested size cannot be used.
var ErrBadSize = errors.New("bad size")

// Resize grows the SD-card image at path to newSize bytes for a bigger card,
// offline: the swap partition moves to the end of the new size (its start
// rounded down to align), the ext4 partition before it grows up to the swap
// and its filesystem is grown with resize2fs. The boot partition, the MBR
// disk signature (the PARTUUIDs in cmdline.txt and fstab) and every other
// byte stay as they were.
//
// The new image is assembled in a temporary file next to path and renamed
// over it only after e2fsck passes, so a failure leaves the original
// untouched. Checksum side files (path.md5, path.sha256, ...) that exist are
// recomputed.
func Resize(ctx context.Context, path string, newSize, align int64) (*ResizeResult, error) {
	if align <= 0 {
		align = DefaultAlignment
	}
	if align&(align-1) != 0 || align%ptable.Sector != 0 {
		return nil, fmt.Errorf("alignment %d is not a power of two of at least 512 bytes; use e.g. 4MiB: %w", align, ErrBadSize)
	}
	src, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open image: %w", err)
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat image: %w", err)
	}
	oldSize := st.Size()
	if newSize%ptable.Sector != 0 {
		return nil, fmt.Errorf("size %d is not a multiple of %d bytes; give the card's size in bytes (blockdev --getsize64): %w", newSize, ptable.Sector, ErrBadSize)
	}
	if newSize < oldSize {
		return nil, fmt.Errorf("size %d is smaller than the image (%d bytes); shrinking is not supported, give at least %d: %w", newSize, oldSize, oldSize, ErrBadSize)
	}
	if newSize == oldSize {
		return nil, fmt.Errorf("the image is already %d bytes; give a bigger --size: %w", newSize, ErrBadSize)
	}
	if newSize/ptable.Sector > 1<<32-1 {
		return nil, fmt.Errorf("size %d is over the 2 TiB an MBR partition table can address: %w", newSize, ErrBadSize)
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
		return nil, fmt.Errorf("size %d leaves no room to grow the root partition (alignment %d); give at least %d: %w", newSize, align, need, ErrBadSize)
	}

	res := &ResizeResult{OldSize: oldSize, NewSize: newSize, Partitions: np}
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
	bar := progress.New("resize", sparse.DataBytes(ext))
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
	n, err = growExt4(ctx, out.File, src, parts[root], np[root].End, ext, bar)
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
	if err := out.Commit(); err != nil {
		return nil, err
	}
	if err := refreshSums(ctx, path); err != nil {
		return res, err
	}
	return res, nil
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
func growExt4(ctx context.Context, dst, src *os.File, root plan.Partition, newEnd int64, ext []sparse.Extent, bar *progress.Bar) (int64, error) {
	tmp, err := os.CreateTemp(filepath.Dir(dst.Name()), ".cps-root-*")
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
		return written, fmt.Errorf("the root filesystem is not clean before resizing, run e2fsck -f on it first: %w", err)
	}
	progress.Logf("resize: growing the root filesystem from %d to %d bytes", root.End-root.Start, newLen)
	cmd := exec.CommandContext(ctx, "resize2fs", tmp.Name(), strconv.FormatInt(newLen/1024, 10)+"K")
	if b, err := cmd.CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			return written, ctx.Err()
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
		return fmt.Errorf("e2fsck -fn %s: %v: %s", path, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// refreshSums recomputes the checksum side files of path that exist, since
// they describe the old bytes.
func refreshSums(ctx context.Context, path string) error {
	var algos []checksum.Algo
	for _, a := range checksum.All {
		if _, err := os.Stat(checksum.SideFile(path, a)); err == nil {
			algos = append(algos, a)
		}
	}
	if len(algos) == 0 {
		return nil
	}
	s, err := checksum.File(ctx, path, checksum.Options{Algos: algos})
	if err != nil {
		return fmt.Errorf("checksum resized image: %w", err)
	}
	return checksum.WriteSideFiles(path, s, algos...)
}
