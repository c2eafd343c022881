// Package ptable reads partition tables of existing image files (GPT or MBR)
// and maps partition types to the plan's content names, for every reader of
// images (verify, sdcard resize, the boot tests) and for the writer in
// builders/disk, so both sides agree on one table of types.
package ptable

import (
	"fmt"
	"strings"

	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/diskfs/go-diskfs/partition/mbr"
)

// Sector is the logical sector size every image uses.
const Sector = 512

// Table kinds.
const (
	GPT = "gpt"
	MBR = "mbr"
)

// GPTType is the GPT partition type for a plan FS name.
func GPTType(fs string) (gpt.Type, error) {
	switch fs {
	case "bios_grub":
		return gpt.BIOSBoot, nil
	case "esp":
		return gpt.EFISystemPartition, nil
	case "vfat":
		return gpt.MicrosoftBasicData, nil
	case "ext4", "none":
		return gpt.LinuxFilesystem, nil
	case "swap":
		return gpt.LinuxSwap, nil
	}
	return "", fmt.Errorf("unknown partition content %q; use ext4, vfat, esp, swap, bios_grub or none", fs)
}

// MBRType is the MBR partition type byte for a plan FS name.
func MBRType(fs string) (mbr.Type, error) {
	switch fs {
	case "esp":
		return mbr.EFISystem, nil
	case "vfat":
		return mbr.Fat32LBA, nil
	case "ext4", "none":
		return mbr.Linux, nil
	case "swap":
		return mbr.LinuxSwap, nil
	case "bios_grub":
		return 0, fmt.Errorf("a bios_grub partition only exists on GPT; with an MBR table GRUB uses the gap after the MBR, so remove the partition or use partition_table = \"gpt\"")
	}
	return 0, fmt.Errorf("unknown partition content %q; use ext4, vfat, esp, swap, bios_grub or none", fs)
}

// FSOf maps a partition type back to the plan's FS name ("" if unknown), for
// readers of existing images (resize, verify).
func FSOf(table, typ string) string {
	typ = strings.ToUpper(typ)
	if table == MBR {
		switch typ {
		case "0C", "0B":
			return "vfat"
		case "EF":
			return "esp"
		case "83":
			return "ext4"
		case "82":
			return "swap"
		}
		return ""
	}
	switch gpt.Type(typ) {
	case gpt.BIOSBoot:
		return "bios_grub"
	case gpt.EFISystemPartition:
		return "esp"
	case gpt.MicrosoftBasicData:
		return "vfat"
	case gpt.LinuxFilesystem, gpt.LinuxRootX86_64, gpt.LinuxRootArm64:
		return "ext4"
	case gpt.LinuxSwap:
		return "swap"
	}
	return ""
}
