package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"syscall"

	"github.com/conpaas/cps/images/catalogue"
	"github.com/conpaas/cps/images/ptable"
	"github.com/conpaas/cps/internal/input"
)

// fileFacts is what an image file's own bytes say about it, read before
// anything is hashed or uploaded: its layout and, for a raw disk, how it
// boots (from its partition table and MBR).
type fileFacts struct {
	Kind   catalogue.Kind // "" when the bytes cannot tell (a raw disk may be raw or sdcard)
	Format catalogue.Format
	// Boot is known only for a raw disk with a readable partition table;
	// BootErr says why it is not otherwise.
	Boot     catalogue.BootModes
	BootErr  error
	BIOSPart bool // a BIOS boot partition (for messages)
}

// Magic numbers, from each format's specification: qcow2 (QEMU's
// docs/interop/qcow2.txt: "QFI\xfb"), VMDK (VMware's Virtual Disk Format
// 1.1: "KDMV" for sparse extents, a "# Disk DescriptorFile" text
// descriptor for monolithic flat ones), tar (POSIX ustar: "ustar" at byte
// 257; an OVA is a tar) and ext2/3/4 (the superblock at 1024, its magic
// 0xEF53 at offset 56).
var (
	qcow2Magic  = []byte("QFI\xfb")
	vmdkMagic   = []byte("KDMV")
	vmdkDescr   = []byte("# Disk DescriptorFile")
	ustarMagic  = []byte("ustar")
	extMagic    = []byte{0x53, 0xef}
	extMagicOff = 1024 + 56
)

// inspectFile sniffs the file's format and, for a raw disk, reads its boot
// modes with images/ptable.
func inspectFile(path string) (fileFacts, error) {
	// Look before opening: a directory opened fine and was then called "a
	// pipe or character device", and opening a FIFO blocked in the kernel
	// (Ctrl-C could not end it) waiting for a writer.
	kind, _, err := input.Stat(path)
	if errors.Is(err, syscall.EISDIR) {
		return fileFacts{}, fmt.Errorf("%s is a directory; register -image needs the image file", path)
	}
	if err != nil {
		return fileFacts{}, err
	}
	if kind == input.Stream {
		return fileFacts{}, fmt.Errorf("%s is a pipe, FIFO or character device; register needs a file or block device it can read twice", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return fileFacts{}, err
	}
	defer f.Close()
	size, err := input.Size(f)
	if err != nil {
		return fileFacts{}, err
	}
	if size < 0 {
		return fileFacts{}, fmt.Errorf("%s is a pipe or character device; register needs a file or block device it can read twice", path)
	}
	head := make([]byte, 4096)
	n, err := f.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return fileFacts{}, fmt.Errorf("read %s: %w", path, err)
	}
	head = head[:n]
	at := func(off int, magic []byte) bool {
		return len(head) >= off+len(magic) && bytes.Equal(head[off:off+len(magic)], magic)
	}
	switch {
	case at(0, qcow2Magic):
		return fileFacts{Format: catalogue.FormatQCOW2, BootErr: errors.New("it is a qcow2 file, whose partition table cpsimage does not read")}, nil
	case at(0, vmdkMagic), at(0, vmdkDescr):
		return fileFacts{Format: catalogue.FormatVMDK, BootErr: errors.New("it is a VMDK file, whose partition table cpsimage does not read")}, nil
	case at(257, ustarMagic):
		return fileFacts{Kind: catalogue.KindOVA, Format: catalogue.FormatOVA, BootErr: errors.New("it is an OVA (a tar archive)")}, nil
	case at(extMagicOff, extMagic) && !at(510, []byte{0x55, 0xaa}):
		// A filesystem, not a disk: the LXC kind.
		return fileFacts{Kind: catalogue.KindLXC, Format: catalogue.FormatRaw}, nil
	}
	ff := fileFacts{Format: catalogue.FormatRaw}
	bios, uefi, biosPart, err := ptable.Boot(f, size, path)
	if err != nil {
		ff.BootErr = err
		return ff, nil
	}
	ff.Boot, ff.BIOSPart = catalogue.NewBootModes(bios, uefi), biosPart
	if len(ff.Boot) == 0 {
		why := "it has no EFI system partition and no boot code in its MBR"
		if biosPart {
			why = "it has a BIOS boot partition but no boot code in its MBR (nothing loads GRUB's core) and no EFI system partition"
		}
		ff.BootErr = errors.New(why)
	}
	return ff, nil
}

// parseBoot reads -boot: "bios", "uefi" or "bios,uefi" (either order).
func parseBoot(s string) (catalogue.BootModes, error) {
	var bios, uefi bool
	for _, m := range strings.Split(s, ",") {
		switch catalogue.BootMode(strings.TrimSpace(m)) {
		case catalogue.BootBIOS:
			bios = true
		case catalogue.BootUEFI:
			uefi = true
		default:
			return nil, fmt.Errorf("-boot %q: use bios, uefi or bios,uefi", s)
		}
	}
	return catalogue.NewBootModes(bios, uefi), nil
}

// parseArch reads -arch.
func parseArch(s string) (catalogue.Arch, error) {
	if s == "" || slices.Contains(catalogue.Arches, catalogue.Arch(s)) {
		return catalogue.Arch(s), nil
	}
	names := make([]string, len(catalogue.Arches))
	for i, a := range catalogue.Arches {
		names[i] = string(a)
	}
	return "", fmt.Errorf("-arch %q: use one of %s (Debian's names)", s, strings.Join(names, ", "))
}
