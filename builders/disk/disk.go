// Package disk lays out and writes partition tables (GPT or MBR) on disk
// image files, without a loop device: the table is computed from the plan's
// partitions and written with go-diskfs straight into the image file.
package disk

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"

	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/diskfs/go-diskfs/partition/mbr"
	"github.com/google/uuid"

	"github.com/conpaas/cps/images/ptable"
	"github.com/conpaas/cps/plan"
)

const (
	mib = 1 << 20
	// gptTail is what the backup GPT takes at the end of the disk: 32
	// sectors of partition entries and the backup header.
	gptTail = 33 * ptable.Sector
	// mbrMaxSectors is the largest sector count an MBR entry can hold.
	mbrMaxSectors = 1<<32 - 1
)

// problem is a *LayoutError of one problem: Layout's errors say which
// template attribute to change (see CheckLayout).
func problem(part int, attr, format string, args ...any) error {
	return &LayoutError{Problems: []Problem{{Partition: part, Attr: attr, Msg: fmt.Sprintf(format, args...)}}}
}

// Layout fills Start and End (bytes, End exclusive) of every partition, in
// table order. Each partition starts on an align boundary (the first never
// before 1 MiB, as parted and sfdisk do); partitions after a fill partition
// (Size 0) are packed against the end of the disk so a "swap near the end"
// stays there; a fill partition takes what is left. It fails with a sentence
// naming the size needed when the partitions do not fit; the error is a
// *LayoutError naming the attribute to change.
func Layout(size, align int64, table string, parts []plan.Partition) error {
	if align <= 0 {
		align = mib
	}
	if align%ptable.Sector != 0 || align&(align-1) != 0 {
		return problem(-1, "alignment", "alignment %d is not a power of two of at least %d bytes; use e.g. 1MiB or 4MiB (the SD card erase block)", align, ptable.Sector)
	}
	if size%ptable.Sector != 0 {
		return problem(-1, "size", "image size %d is not a multiple of the %d-byte sector", size, ptable.Sector)
	}
	if len(parts) == 0 {
		return problem(-1, "", "the image has no partitions; declare at least one partition block")
	}
	first, last, err := usable(size, table)
	if err != nil {
		return err
	}
	if table == ptable.MBR && len(parts) > 4 {
		return problem(-1, "partition_table", "an MBR table holds at most 4 primary partitions, the image declares %d; use partition_table = \"gpt\" or fewer partitions", len(parts))
	}
	fill := -1
	for i, p := range parts {
		if p.Size < 0 {
			return problem(i, "size", "partition %q: negative size %d", p.Name, p.Size)
		}
		if p.Size%ptable.Sector != 0 {
			return problem(i, "size", "partition %q: size %d is not a multiple of %d bytes", p.Name, p.Size, ptable.Sector)
		}
		if p.Size == 0 {
			if fill >= 0 {
				return problem(i, "size", "partitions %q and %q both fill the rest of the disk; give one of them a size", parts[fill].Name, p.Name)
			}
			fill = i
		}
	}

	// Forward pass up to the fill partition (or all of them).
	pos := roundUp(first, align)
	head := len(parts)
	if fill >= 0 {
		head = fill
	}
	for i := 0; i < head; i++ {
		parts[i].Start = pos
		parts[i].End = pos + parts[i].Size
		pos = roundUp(parts[i].End, align)
	}
	if fill < 0 {
		if end := parts[len(parts)-1].End; end > last {
			return tooSmall(size, end-last)
		}
		return nil
	}

	// Backward pass: the partitions after the fill one, packed at the end.
	limit := last
	for i := len(parts) - 1; i > fill; i-- {
		start := roundDown(limit-parts[i].Size, align)
		parts[i].Start = start
		parts[i].End = start + parts[i].Size
		limit = start
	}
	parts[fill].Start = pos
	parts[fill].End = roundDown(limit, ptable.Sector)
	// A fill partition needs room for at least one alignment unit.
	if parts[fill].End-parts[fill].Start < align {
		need := align - (parts[fill].End - parts[fill].Start)
		return tooSmall(size, need)
	}
	return nil
}

func tooSmall(size, short int64) error {
	need := roundUp(size+short, mib)
	return problem(-1, "size", "the partitions do not fit in an image of %d bytes; set size to at least %d bytes (%d MiB)", size, need, need/mib)
}

// usable returns the first and last (exclusive) byte partitions may use.
func usable(size int64, table string) (int64, int64, error) {
	switch table {
	case ptable.GPT, "":
		if size < 2*mib {
			return 0, 0, problem(-1, "size", "image size %d is too small for a GPT disk; use at least 2MiB", size)
		}
		return mib, size - gptTail, nil
	case ptable.MBR:
		if size/ptable.Sector > mbrMaxSectors {
			return 0, 0, problem(-1, "size", "image size %d is over the 2 TiB an MBR table can address; use partition_table = \"gpt\"", size)
		}
		return mib, size, nil
	default:
		return 0, 0, problem(-1, "partition_table", "unknown partition table %q; use \"gpt\" or \"mbr\"", table)
	}
}

func roundUp(n, a int64) int64   { return (n + a - 1) / a * a }
func roundDown(n, a int64) int64 { return n / a * a }

// GUID derives a stable UUID (version 5) from seed and what, so that two
// builds of the same inputs produce the same disk, partition and filesystem
// identifiers (needed for byte-identical images).
func GUID(seed, what string) string {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("cps:"+seed+"\x00"+what)).String()
}

// DiskID derives the 32-bit MBR disk signature from seed; Linux shows it as
// the PARTUUID prefix ("xxxxxxxx-02"), which Raspberry Pi cmdline.txt uses.
func DiskID(seed string) uint32 {
	h := sha256.Sum256([]byte("cps-mbr:" + seed))
	id := binary.LittleEndian.Uint32(h[:4])
	if id == 0 { // 0 means "no signature" to some tools
		id = 1
	}
	return id
}

// PartUUID is the PARTUUID Linux reports for partition i (0-based) of a
// table written by WriteTable with the same seed.
func PartUUID(table string, parts []plan.Partition, i int, seed string) string {
	if table == ptable.MBR {
		return fmt.Sprintf("%08x-%02d", DiskID(seed), i+1)
	}
	return GUID(seed, "part:"+parts[i].Name)
}

// WriteTable writes the partition table for parts (already laid out) into f,
// an image file of exactly size bytes. For GPT it writes the protective MBR
// entries, both headers and both entry arrays, and leaves the 440 bytes of
// boot code alone so a boot loader can be installed before or after.
func WriteTable(f *os.File, size int64, table string, parts []plan.Partition, seed string) error {
	for _, p := range parts {
		if p.End <= p.Start || p.Start%ptable.Sector != 0 || p.End%ptable.Sector != 0 {
			return fmt.Errorf("partition %q has no valid layout (start %d, end %d); call disk.Layout first", p.Name, p.Start, p.End)
		}
	}
	switch table {
	case ptable.GPT, "":
		t := &gpt.Table{
			LogicalSectorSize:  ptable.Sector,
			PhysicalSectorSize: ptable.Sector,
			ProtectiveMBR:      true,
			GUID:               GUID(seed, "disk"),
		}
		for i, p := range parts {
			typ, err := ptable.GPTType(p.FS)
			if err != nil {
				return fmt.Errorf("partition %q: %w", p.Name, err)
			}
			t.Partitions = append(t.Partitions, &gpt.Partition{
				Index: i + 1,
				Start: uint64(p.Start / ptable.Sector),
				End:   uint64(p.End/ptable.Sector - 1), // GPT's last LBA is inclusive
				Size:  uint64(p.End - p.Start),
				Type:  typ,
				Name:  p.Name,
				GUID:  PartUUID(ptable.GPT, parts, i, seed),
			})
		}
		if err := t.Write(f, size); err != nil {
			return fmt.Errorf("write GPT to %s: %w", f.Name(), err)
		}
		return nil
	case ptable.MBR:
		t := &mbr.Table{LogicalSectorSize: ptable.Sector, PhysicalSectorSize: ptable.Sector}
		for i, p := range parts {
			typ, err := ptable.MBRType(p.FS)
			if err != nil {
				return fmt.Errorf("partition %q: %w", p.Name, err)
			}
			t.Partitions = append(t.Partitions, &mbr.Partition{
				Index: i + 1,
				// The Pi firmware does not care; BIOSes that do want the
				// first FAT partition active.
				Bootable: i == 0 && (p.FS == "vfat" || p.FS == "esp"),
				Type:     typ,
				Start:    uint32(p.Start / ptable.Sector),
				Size:     uint32((p.End - p.Start) / ptable.Sector),
			})
		}
		if err := t.Write(f, size); err != nil {
			return fmt.Errorf("write MBR to %s: %w", f.Name(), err)
		}
		var sig [4]byte
		binary.LittleEndian.PutUint32(sig[:], DiskID(seed))
		if _, err := f.WriteAt(sig[:], 440); err != nil {
			return fmt.Errorf("write MBR disk signature to %s: %w", f.Name(), err)
		}
		return nil
	default:
		return fmt.Errorf("unknown partition table %q; use \"gpt\" or \"mbr\"", table)
	}
}
