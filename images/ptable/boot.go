package ptable

import (
	"bytes"
	"fmt"
	"io"
)

// BootCodeSize is the MBR's boot code area: the bytes before the disk
// signature (440), where GRUB's boot.img (or any BIOS boot loader) lives.
const BootCodeSize = 440

// Boot says how the size-byte disk r boots, from its partition table:
// UEFI when it has an EFI system partition (where firmware looks for a
// loader), BIOS when the MBR holds boot code (what a BIOS runs; a BIOS
// boot partition alone is not enough: with zeroed boot code nothing ever
// loads the GRUB core it holds, which `cpsimage verify --structure`
// reports). biosPart says whether it has a BIOS boot partition, for
// messages. An image with neither is not bootable by either firmware.
func Boot(r io.ReaderAt, size int64, name string) (bios, uefi, biosPart bool, err error) {
	_, parts, err := ReadAt(r, size, name)
	if err != nil {
		return false, false, false, err
	}
	for _, p := range parts {
		switch p.FS {
		case "esp":
			uefi = true
		case "bios_grub":
			biosPart = true
		}
	}
	code := make([]byte, BootCodeSize)
	if _, err := r.ReadAt(code, 0); err != nil {
		return false, false, false, fmt.Errorf("%s: read the MBR: %w", name, err)
	}
	bios = !bytes.Equal(code, make([]byte, BootCodeSize))
	return bios, uefi, biosPart, nil
}
