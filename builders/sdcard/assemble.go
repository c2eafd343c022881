package sdcard

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/google/uuid"

	"github.com/conpaas/cps/builders/disk"
	"github.com/conpaas/cps/builders/fs"
	"github.com/conpaas/cps/images/ptable"
	"github.com/conpaas/cps/images/sparse"
	"github.com/conpaas/cps/internal/atomicfile"
	"github.com/conpaas/cps/internal/progress"
	"github.com/conpaas/cps/plan"
)

// Layout fills in the defaults of an sdcard image block and lays out its
// partitions (Start/End), failing with one sentence on bad input. It
// writes nothing.
func Layout(img *plan.Image) error {
	if img.Size == 0 {
		img.Size = plan.SDCardSize
	}
	if img.Alignment == 0 {
		img.Alignment = DefaultAlignment
	}
	if img.PartitionTable == "" {
		img.PartitionTable = ptable.MBR
	}
	if img.Arch == "" {
		img.Arch = "arm64"
	}
	if len(img.Partitions) == 0 {
		img.Partitions = DefaultPartitions()
	}
	a := img.Alignment
	if a < ptable.Sector || a&(a-1) != 0 {
		return fmt.Errorf("image %q: alignment %d is not a power of two of at least 512 bytes; SD cards want 4MiB (4194304)", img.Name, a)
	}
	if img.PartitionTable != ptable.MBR {
		return fmt.Errorf("image %q: partition_table %q: the Raspberry Pi 2/3 firmware boots only from an MBR table; use partition_table = \"mbr\"", img.Name, img.PartitionTable)
	}
	switch img.Arch {
	case "arm64", "armhf":
	default:
		return fmt.Errorf("image %q: arch %q does not run on a Raspberry Pi 2/3; use arm64 (Pi 3, Pi 2 v1.2) or armhf (every Pi 2)", img.Name, img.Arch)
	}
	var boot, root int
	for _, p := range img.Partitions {
		switch p.FS {
		case "vfat":
			boot++
		case "ext4":
			root++
		case "swap", "none":
		default:
			return fmt.Errorf("image %q: partition %q: content %q is not used on an SD card; use vfat (boot), ext4 (root), swap or none", img.Name, p.Name, p.FS)
		}
	}
	if boot != 1 || root != 1 || img.Partitions[0].FS != "vfat" {
		return fmt.Errorf("image %q: an SD card needs the FAT32 boot partition first and exactly one ext4 root partition (found %d vfat, %d ext4)", img.Name, boot, root)
	}
	if err := disk.Layout(img.Size, a, img.PartitionTable, img.Partitions); err != nil {
		return fmt.Errorf("image %q: %w", img.Name, err)
	}
	// disk.Layout aligns every start; this is the invariant the firmware
	// and the card's erase blocks need, checked rather than trusted.
	for _, p := range img.Partitions {
		if p.Start%a != 0 {
			return fmt.Errorf("image %q: partition %q starts at %d, not on a %d-byte boundary", img.Name, p.Name, p.Start, a)
		}
	}
	return nil
}

// DefaultPartitions is the ConPaaS SD-card layout: 512 MiB FAT32 firmware
// partition, ext4 root filling the card, 1 GiB swap at the end.
func DefaultPartitions() []plan.Partition {
	return []plan.Partition{
		{Name: "boot", FS: "vfat", Label: "RASPIFIRM", Size: 512 << 20, Mount: "/boot/firmware"},
		{Name: "root", FS: "ext4", Label: "RASPIROOT", Mount: "/"},
		{Name: "swap", FS: "swap", Label: "swap", Size: 1 << 30},
	}
}

// ids are the identifiers a build derives from its seed.
type ids struct {
	seed string
}

func (d ids) fsUUID(p plan.Partition) string {
	if p.UUID != "" {
		return p.UUID
	}
	return disk.GUID(d.seed, "fs:"+p.Name)
}

// volID is the FAT serial number: the first 4 bytes of the partition's
// filesystem UUID, so it is stable and overridable the same way.
func (d ids) volID(p plan.Partition) uint32 {
	u, err := uuid.Parse(d.fsUUID(p))
	if err != nil {
		return binary.BigEndian.Uint32([]byte(d.seed + "0000"))
	}
	return binary.BigEndian.Uint32(u[:4])
}

// Assemble writes the image file img.Output (laid out by Layout): MBR,
// FAT32 from bootDir, ext4 from rootDir, swap headers. The file is written
// under a temporary name and renamed when complete. It returns the data
// bytes of the result.
func Assemble(ctx context.Context, ui *progress.UI, img *plan.Image, bootDir, rootDir, seed string, epoch int64) (int64, error) {
	d := ids{seed: seed}
	out, err := atomicfile.Create(img.Output, 0o644)
	if err != nil {
		return 0, err
	}
	defer out.Abort()
	if err := out.Truncate(img.Size); err != nil {
		return 0, fmt.Errorf("size %s: %w", out.Name(), err)
	}
	if err := disk.WriteTable(out.File, img.Size, img.PartitionTable, img.Partitions, seed); err != nil {
		return 0, err
	}
	for _, p := range img.Partitions {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		n := p.End - p.Start
		switch p.FS {
		case "vfat":
			ui.Logf("sdcard: FAT32 %s (%d MiB) from %s", p.Name, n>>20, bootDir)
			if err := fs.MakeFAT32(ctx, out.File, p.Start, n, bootDir, p.Label, d.volID(p), epoch); err != nil {
				return 0, fmt.Errorf("partition %q: %w", p.Name, err)
			}
		case "ext4":
			ui.Logf("sdcard: ext4 %s (%d MiB) from %s", p.Name, n>>20, rootDir)
			if err := fs.MakeExt4(ctx, out.File, p.Start, n, rootDir, p.Label, d.fsUUID(p), epoch); err != nil {
				return 0, fmt.Errorf("partition %q: %w", p.Name, err)
			}
		case "swap":
			if err := fs.MakeSwap(out.File, p.Start, n, p.Label, d.fsUUID(p)); err != nil {
				return 0, fmt.Errorf("partition %q: %w", p.Name, err)
			}
		}
	}
	ext, err := sparse.DataExtents(out.File)
	if err != nil {
		return 0, err
	}
	if err := out.Commit(); err != nil {
		return 0, err
	}
	return sparse.DataBytes(ext), nil
}
