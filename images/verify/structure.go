package verify

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/conpaas/cps/images/ptable"
	"github.com/conpaas/cps/internal/input"
	"github.com/conpaas/cps/plan"
)

const sdAlign = 4 << 20

// Structure checks a disk image file: a readable partition table whose
// partitions lie inside the file without overlapping, the filesystem each
// partition's type promises (ext4 superblock, FAT boot sector, swap
// signature), boot code in the MBR for an image with a BIOS boot
// partition (and some way to boot for kind "raw"), and for kind "sdcard"
// the exact card size and 4 MiB alignment. An image of kind "lxc" is one
// ext2/3/4 filesystem with no partition table (what Nova's LXC driver
// mounts); with kind "" a file that has no partition table but a
// filesystem at its start is checked as one. It returns one line per
// check that passed (checked) and one per problem; no problems means
// sound.
func Structure(path, kind string) (checked, problems []string, err error) {
	k, size, err := input.Stat(path)
	if err != nil {
		return nil, nil, err
	}
	if k == input.Stream {
		return nil, nil, fmt.Errorf("%s is a pipe or character device; the structure check needs random access: save it to a file first: %w", path, input.ErrNotSeekable)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	checked, problems = checkDisk(f, size, kind)
	return checked, problems, nil
}

func checkDisk(r io.ReaderAt, size int64, kind string) (checked, problems []string) {
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	ok := func(format string, args ...any) { checked = append(checked, fmt.Sprintf(format, args...)) }
	if kind == plan.KindLXC {
		return checkFilesystem(r, size)
	}
	if kind == plan.KindSDCard {
		if size != plan.SDCardSize {
			add("size is %d bytes, an SD card image must be exactly %d", size, plan.SDCardSize)
		} else {
			ok("size: %d bytes, the SD card size", size)
		}
	}
	table, parts, err := readTable(r, size)
	if err != nil && kind == "" && isExt(r, 0) {
		return checkFilesystem(r, size)
	}
	if err != nil {
		add("partition table: %v", err)
		return checked, problems
	}
	if len(parts) == 0 {
		add("partition table (%s) has no partitions", table)
	} else {
		ok("partition table: %s, %d partitions", table, len(parts))
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].Start < parts[j].Start })
	aligned := true
	for i, p := range parts {
		n := i + 1
		if p.End > size {
			add("partition %d (%s) ends at byte %d, past the end of the %d-byte image (truncated download?)", n, p.FS, p.End, size)
			continue
		}
		if i > 0 && p.Start < parts[i-1].End {
			add("partition %d starts at byte %d, inside partition %d (ends at %d)", n, p.Start, i, parts[i-1].End)
		}
		if kind == plan.KindSDCard && p.Start%sdAlign != 0 {
			add("partition %d starts at byte %d, not on a 4 MiB boundary", n, p.Start)
			aligned = false
		}
		if msg, what := signature(r, p); msg != "" {
			add("partition %d (%s at byte %d): %s", n, p.FS, p.Start, msg)
		} else {
			ok("partition %d (%s, bytes %d-%d): %s", n, p.FS, p.Start, p.End, what)
		}
	}
	if kind == plan.KindSDCard && aligned && len(parts) > 0 {
		ok("alignment: every partition starts on a 4 MiB boundary")
	}
	code := make([]byte, 440)
	r.ReadAt(code, 0)
	noCode := bytes.Equal(code, make([]byte, 440))
	hasESP, hasBIOS := false, false
	for _, p := range parts {
		hasESP = hasESP || p.FS == "esp"
		hasBIOS = hasBIOS || p.FS == "bios_grub"
	}
	switch {
	case hasBIOS && noCode:
		add("the MBR has no boot code (its first 440 bytes are zero) but the image has a BIOS boot partition: it cannot boot under BIOS (SeaBIOS, most clouds)")
	case kind == plan.KindRaw && noCode && !hasESP:
		add("no boot code in the MBR and no EFI system partition: the image cannot boot")
	case !noCode:
		ok("MBR boot code: present (%s)", bootCodeName(code))
	}
	return checked, problems
}

// bootCodeName says whose boot code the MBR holds, by the strings GRUB's
// boot.img and SYSLINUX's mbr.bin carry.
func bootCodeName(code []byte) string {
	switch {
	case bytes.Contains(code, []byte("GRUB")):
		return "GRUB boot.img"
	case bytes.Contains(code, []byte("Missing operating system")):
		return "SYSLINUX or MS-DOS style"
	}
	return "not recognised"
}

// signature checks the magic of the filesystem p's type promises: a
// problem, or what was found.
func signature(r io.ReaderAt, p plan.Partition) (problem, found string) {
	buf := make([]byte, 4096)
	if _, err := r.ReadAt(buf, p.Start); err != nil && err != io.EOF {
		return fmt.Sprintf("cannot read: %v", err), ""
	}
	switch p.FS {
	case "ext4":
		if binary.LittleEndian.Uint16(buf[1080:]) != 0xEF53 {
			return "no ext2/3/4 superblock (magic 0xEF53 at offset 1080)", ""
		}
		return "", "ext2/3/4 superblock"
	case "vfat", "esp":
		if buf[510] != 0x55 || buf[511] != 0xAA || (!bytes.HasPrefix(buf[82:], []byte("FAT32")) && !bytes.HasPrefix(buf[54:], []byte("FAT1"))) {
			return "no FAT boot sector", ""
		}
		return "", "FAT boot sector"
	case "swap":
		if !bytes.Equal(buf[4086:4096], []byte("SWAPSPACE2")) {
			return "no swap signature (SWAPSPACE2)", ""
		}
		return "", "swap signature"
	case "bios_grub":
		if bytes.Equal(buf[:512], make([]byte, 512)) {
			return "empty: no GRUB core image", ""
		}
		return "", "GRUB core image present"
	}
	return "", "not checked (no known signature)"
}

// readTable reads the partition table of the size-byte disk r (a file, or
// the parts of a stream kept in memory).
func readTable(r io.ReaderAt, size int64) (string, []plan.Partition, error) {
	name := "the image"
	if f, ok := r.(*os.File); ok {
		name = f.Name()
	}
	return ptable.ReadAt(r, size, name)
}

// isExt reports whether an ext2/3/4 superblock starts at off+1024.
func isExt(r io.ReaderAt, off int64) bool {
	var magic [2]byte
	_, err := r.ReadAt(magic[:], off+1080)
	return err == nil && binary.LittleEndian.Uint16(magic[:]) == 0xEF53
}

// checkFilesystem checks a filesystem image (kind lxc): an ext2/3/4
// superblock at 1024 whose block count fits the file, and no partition
// table (a whole disk would not mount as a container's root).
func checkFilesystem(r io.ReaderAt, size int64) (checked, problems []string) {
	sb := make([]byte, 1024)
	if _, err := r.ReadAt(sb, 1024); err != nil {
		return nil, []string{fmt.Sprintf("cannot read the superblock: %v (a filesystem image is at least 2 KiB)", err)}
	}
	if binary.LittleEndian.Uint16(sb[56:]) != 0xEF53 {
		if _, _, err := readTable(r, size); err == nil {
			return nil, []string{"this is a partitioned disk, not a filesystem image: Nova's LXC driver mounts the whole image as the container's root, so an LXC image must be one ext4 filesystem (build it with kind = \"lxc\")"}
		}
		return nil, []string{"no ext2/3/4 superblock (magic 0xEF53 at offset 1080): not a filesystem image"}
	}
	// s_blocks_count_lo, s_log_block_size, and s_blocks_count_hi when the
	// 64bit feature (INCOMPAT 0x80) is on.
	blocks := uint64(binary.LittleEndian.Uint32(sb[4:]))
	if binary.LittleEndian.Uint32(sb[96:])&0x80 != 0 {
		blocks |= uint64(binary.LittleEndian.Uint32(sb[0x150:])) << 32
	}
	logBS := binary.LittleEndian.Uint32(sb[24:])
	if logBS > 6 {
		return nil, []string{fmt.Sprintf("superblock: block size 2^%d KiB is not a valid ext block size (corrupt superblock)", logBS)}
	}
	if fsSize := blocks * (1024 << logBS); fsSize > uint64(size) {
		return nil, []string{fmt.Sprintf("the filesystem is %d bytes but the file only %d (truncated download?)", fsSize, size)}
	}
	return []string{fmt.Sprintf("filesystem image: ext2/3/4 superblock, %d blocks of %d bytes, within the file", blocks, 1024<<logBS)}, nil
}
