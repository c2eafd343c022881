// Package grub makes an image bootable with GRUB without grub-install and
// without a block device: grub-mkimage builds the core images from the build
// host's GRUB module directories, and our own code writes them into the
// image file, doing what grub-install/grub-bios-setup would do on a disk:
//
//   - BIOS: core.img goes into the BIOS boot partition (GPT) or the gap after
//     the MBR; boot.img's code goes into the first 440 bytes of the MBR, with
//     the LBA of core.img patched in, and the first block list of core.img's
//     diskboot sector patched with where the rest of core.img lies.
//   - UEFI: BOOTX64.EFI (the removable-media path, like Debian's cloud
//     images), for the EFI system partition.
//
// Both core images carry an embedded configuration that finds the root
// filesystem by UUID and reads /boot/grub/grub.cfg from it, so the modules
// the image needs are embedded and the root filesystem needs no GRUB files
// but grub.cfg.
package grub

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Module directories of Debian's grub-pc-bin and grub-efi-amd64-bin.
var (
	BIOSDir = "/usr/lib/grub/i386-pc"
	EFIDir  = "/usr/lib/grub/x86_64-efi"
)

// Offsets GRUB's own setup patches (grub/include/grub/i386/pc/boot.h).
const (
	bootKernelSector = 0x5c  // boot.img: LBA of core.img's first sector (8 bytes)
	bootDriveCheck   = 0x66  // boot.img: the "is it a floppy?" jump, nopped for disks
	mbrCodeSize      = 440   // boot code before the disk signature and table
	sector           = 512   // the block list and LBAs are in 512-byte sectors
	blocklistSize    = 12    // start (8), len (2), segment (2)
	coreSegment      = 0x820 // where diskboot loads the rest of core.img
)

var common = []string{"normal", "configfile", "search", "search_fs_uuid", "ext2", "fat",
	"part_gpt", "part_msdos", "linux", "echo", "test", "serial", "terminal", "gzio", "sleep"}

// Modules embedded in each core image: enough to find the root filesystem
// and read grub.cfg, a serial console, and the Linux loader.
var (
	BIOSModules = append([]string{"biosdisk"}, common...)
	EFIModules  = append([]string{"efi_gop", "efi_uga", "all_video"}, common...)
)

// embedded is the configuration compiled into the core images.
func embedded(rootUUID string) string {
	return fmt.Sprintf("search --no-floppy --fs-uuid --set=root %s\nset prefix=($root)/boot/grub\nconfigfile ($root)/boot/grub/grub.cfg\n", rootUUID)
}

// MkImage runs grub-mkimage for format ("i386-pc" or "x86_64-efi") with the
// embedded configuration for rootUUID and returns the image bytes.
func MkImage(ctx context.Context, format, rootUUID string) ([]byte, error) {
	dir, mods := BIOSDir, BIOSModules
	if format == "x86_64-efi" {
		dir, mods = EFIDir, EFIModules
	}
	if _, err := os.Stat(filepath.Join(dir, "moddep.lst")); err != nil {
		pkg := map[string]string{"i386-pc": "grub-pc-bin", "x86_64-efi": "grub-efi-amd64-bin"}[format]
		return nil, fmt.Errorf("GRUB modules for %s are not in %s; install %s (scripts/deps.sh)", format, dir, pkg)
	}
	tmp, err := os.MkdirTemp("", "cps-grub-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	cfg := filepath.Join(tmp, "embedded.cfg")
	if err := os.WriteFile(cfg, []byte(embedded(rootUUID)), 0o644); err != nil {
		return nil, err
	}
	out := filepath.Join(tmp, "core")
	args := []string{"-O", format, "-d", dir, "-c", cfg, "-p", "/boot/grub", "-o", out}
	if format == "i386-pc" {
		// The BIOS boot partition is 1 MiB; compressing keeps core.img far
		// below that with room for more modules.
		args = append(args, "-C", "xz")
	}
	cmd := exec.CommandContext(ctx, "grub-mkimage", append(args, mods...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return nil, fmt.Errorf("grub-mkimage is not installed; install grub-common (scripts/deps.sh)")
		}
		return nil, fmt.Errorf("grub-mkimage -O %s: %v: %s", format, err, strings.TrimSpace(stderr.String()))
	}
	return os.ReadFile(out)
}

// InstallBIOS writes core (from MkImage "i386-pc") at byte offset coreOff of
// img, which must hold room bytes, and boot.img's code into the MBR,
// keeping the disk signature and partition table (bytes 440-511).
func InstallBIOS(img *os.File, core []byte, coreOff, room int64) error {
	if coreOff%sector != 0 || coreOff == 0 {
		return fmt.Errorf("GRUB core image offset %d is not a sector after the MBR", coreOff)
	}
	if int64(len(core)) > room {
		return fmt.Errorf("GRUB core image is %d bytes but its space holds %d; make the bios_grub partition bigger", len(core), room)
	}
	if len(core) < sector {
		return fmt.Errorf("GRUB core image of %d bytes is truncated", len(core))
	}
	boot, err := os.ReadFile(filepath.Join(BIOSDir, "boot.img"))
	if err != nil {
		return fmt.Errorf("read boot.img (install grub-pc-bin): %w", err)
	}
	if len(boot) != sector {
		return fmt.Errorf("%s/boot.img is %d bytes, want %d", BIOSDir, len(boot), sector)
	}
	lba := uint64(coreOff / sector)
	core = append([]byte(nil), core...)
	// diskboot (core.img's first sector) loads the remaining sectors from
	// its block list; grub-mkimage filled in the length and segment.
	bl := core[sector-blocklistSize : sector]
	rest := (len(core) + sector - 1) / sector
	if n := binary.LittleEndian.Uint16(bl[8:]); int(n) != rest-1 {
		return fmt.Errorf("GRUB core image block list says %d sectors, the image has %d: not an i386-pc core.img", n, rest-1)
	}
	if seg := binary.LittleEndian.Uint16(bl[10:]); seg != coreSegment {
		return fmt.Errorf("GRUB core image block list segment %#x, want %#x: not an i386-pc core.img", seg, coreSegment)
	}
	binary.LittleEndian.PutUint64(bl[0:], lba+1)
	if _, err := img.WriteAt(core, coreOff); err != nil {
		return fmt.Errorf("write GRUB core image: %w", err)
	}

	binary.LittleEndian.PutUint64(boot[bootKernelSector:], lba)
	// As grub-bios-setup does for a hard disk: trust the drive number the
	// BIOS passes in DL instead of probing for a floppy.
	boot[bootDriveCheck], boot[bootDriveCheck+1] = 0x90, 0x90
	if _, err := img.WriteAt(boot[:mbrCodeSize], 0); err != nil {
		return fmt.Errorf("write GRUB boot code into the MBR: %w", err)
	}
	return nil
}

// Config is the /boot/grub/grub.cfg of the image.
type Config struct {
	RootUUID string
	Kernel   string // path inside the root filesystem, e.g. /boot/vmlinuz-6.1.0-27-amd64
	Initrd   string // "" for none
	Cmdline  string // extra kernel arguments
	Timeout  int
	Title    string
}

// Render returns grub.cfg: serial and screen console, one menu entry.
func (c Config) Render() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by cps (cpsimage build); not by grub-mkconfig.\n")
	fmt.Fprintf(&b, "serial --unit=0 --speed=115200\nterminal_input serial console\nterminal_output serial console\n")
	fmt.Fprintf(&b, "set timeout=%d\nset default=0\n\n", c.Timeout)
	fmt.Fprintf(&b, "menuentry '%s' {\n", strings.ReplaceAll(c.Title, "'", ""))
	fmt.Fprintf(&b, "\tsearch --no-floppy --fs-uuid --set=root %s\n", c.RootUUID)
	fmt.Fprintf(&b, "\techo 'Loading %s ...'\n", filepath.Base(c.Kernel))
	cmdline := strings.TrimSpace(c.Cmdline)
	if !strings.Contains(cmdline, "console=") {
		// The serial console is how clouds (and the boot test) see the
		// VM; the last console= is /dev/console.
		cmdline = strings.TrimSpace("console=tty0 console=ttyS0,115200n8 " + cmdline)
	}
	fmt.Fprintf(&b, "\tlinux %s root=UUID=%s ro %s\n", c.Kernel, c.RootUUID, cmdline)
	if c.Initrd != "" {
		fmt.Fprintf(&b, "\tinitrd %s\n", c.Initrd)
	}
	fmt.Fprintf(&b, "}\n")
	return b.String()
}
