package verify

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/conpaas/cps/images/ptable"
	"github.com/conpaas/cps/plan"
)

// SDCardSize is the exact size of a ConPaaS Raspberry Pi card image.
const SDCardSize = 31998345216

const sdAlign = 4 << 20

// Structure checks a disk image file: a readable partition table whose
// partitions lie inside the file without overlapping, the filesystem each
// partition's type promises (ext4 superblock, FAT boot sector, swap
// signature), boot code for a bootable x86 image, and for kind "sdcard"
// the exact card size and 4 MiB alignment. kind may be "" (no kind-specific
// checks). It returns one line per problem; nil means sound.
func Structure(path, kind string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%s is a directory, not an image", path)
	}
	return checkDisk(f, st.Size(), kind), nil
}

func checkDisk(r io.ReaderAt, size int64, kind string) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if kind == plan.KindSDCard && size != SDCardSize {
		add("size is %d bytes, an SD card image must be exactly %d", size, SDCardSize)
	}
	table, parts, err := readTable(r, size)
	if err != nil {
		add("partition table: %v", err)
		return problems
	}
	if len(parts) == 0 {
		add("partition table (%s) has no partitions", table)
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].Start < parts[j].Start })
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
		}
		if msg := signature(r, p); msg != "" {
			add("partition %d (%s at byte %d): %s", n, p.FS, p.Start, msg)
		}
	}
	if kind == plan.KindRaw {
		code := make([]byte, 440)
		r.ReadAt(code, 0)
		hasESP := false
		for _, p := range parts {
			hasESP = hasESP || p.FS == "esp"
		}
		if bytes.Equal(code, make([]byte, 440)) && !hasESP {
			add("no boot code in the MBR and no EFI system partition: the image cannot boot")
		}
	}
	return problems
}

// signature checks the magic of the filesystem p's type promises.
func signature(r io.ReaderAt, p plan.Partition) string {
	buf := make([]byte, 4096)
	if _, err := r.ReadAt(buf, p.Start); err != nil && err != io.EOF {
		return fmt.Sprintf("cannot read: %v", err)
	}
	switch p.FS {
	case "ext4":
		if binary.LittleEndian.Uint16(buf[1080:]) != 0xEF53 {
			return "no ext2/3/4 superblock (magic 0xEF53 at offset 1080)"
		}
	case "vfat", "esp":
		if buf[510] != 0x55 || buf[511] != 0xAA || (!bytes.HasPrefix(buf[82:], []byte("FAT32")) && !bytes.HasPrefix(buf[54:], []byte("FAT1"))) {
			return "no FAT boot sector"
		}
	case "swap":
		if !bytes.Equal(buf[4086:4096], []byte("SWAPSPACE2")) {
			return "no swap signature (SWAPSPACE2)"
		}
	case "bios_grub":
		if bytes.Equal(buf[:512], make([]byte, 512)) {
			return "empty: no GRUB core image"
		}
	}
	return ""
}

// readTable reads the partition table through a temporary sparse file of
// the image's size holding only its first MiB and last 64 KiB (the primary
// and backup GPT), so it works for streams as well as files.
func readTable(r io.ReaderAt, size int64) (string, []plan.Partition, error) {
	if f, ok := r.(*os.File); ok {
		return ptable.Read(f)
	}
	tmp, err := os.CreateTemp("", "cps-verify-table-*")
	if err != nil {
		return "", nil, err
	}
	defer func() { tmp.Close(); os.Remove(tmp.Name()) }()
	if err := tmp.Truncate(size); err != nil {
		return "", nil, err
	}
	for _, rg := range [][2]int64{{0, 1 << 20}, {size - 64<<10, 64 << 10}} {
		off, n := rg[0], rg[1]
		if off < 0 {
			off = 0
		}
		if off+n > size {
			n = size - off
		}
		b := make([]byte, n)
		m, _ := r.ReadAt(b, off)
		if _, err := tmp.WriteAt(b[:m], off); err != nil {
			return "", nil, err
		}
	}
	return ptable.Read(tmp)
}
