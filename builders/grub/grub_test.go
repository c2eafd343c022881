package grub

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/conpaas/cps/builders/disk"
	"github.com/conpaas/cps/images/ptable"
	"github.com/conpaas/cps/internal/testutil"
	"github.com/conpaas/cps/plan"
)

const testUUID = "0b5ad2c8-3f7e-4a57-9a77-1f1b2c3d4e5f"

// TestInstallBIOS writes a real i386-pc core image into the BIOS boot
// partition of a GPT disk and checks every byte grub-bios-setup would have
// set, and that the partition table around it survives.
func TestInstallBIOS(t *testing.T) {
	testutil.RequireTool(t, "grub-mkimage")
	if _, err := os.Stat(filepath.Join(BIOSDir, "boot.img")); err != nil {
		if testutil.Strict() {
			t.Fatalf("GRUB i386-pc files missing (install grub-pc-bin): %v", err)
		}
		t.Skip("grub-pc-bin not installed")
	}
	core, err := MkImage(context.Background(), "i386-pc", testUUID)
	if err != nil {
		t.Fatal(err)
	}
	// The embedded configuration is in the core image, uncompressed or not;
	// the xz-compressed payload makes the image small.
	if len(core) > 1<<20 || len(core) < 2*sector {
		t.Fatalf("core.img is %d bytes", len(core))
	}

	const size = 8 << 20
	parts := []plan.Partition{{Name: "bios", FS: "bios_grub", Size: 1 << 20}, {Name: "root", FS: "ext4"}}
	if err := disk.Layout(size, 1<<20, ptable.GPT, parts); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := disk.WriteTable(f, size, ptable.GPT, parts, "seed"); err != nil {
		t.Fatal(err)
	}
	before := make([]byte, 34*sector)
	f.ReadAt(before, 0)

	if err := InstallBIOS(f, core, parts[0].Start, parts[0].End-parts[0].Start); err != nil {
		t.Fatal(err)
	}
	after := make([]byte, 34*sector)
	f.ReadAt(after, 0)
	if !bytes.Equal(before[mbrCodeSize:], after[mbrCodeSize:]) {
		t.Error("InstallBIOS changed the disk signature, partition table or GPT")
	}
	boot, _ := os.ReadFile(filepath.Join(BIOSDir, "boot.img"))
	lba := uint64(parts[0].Start / sector)
	if got := binary.LittleEndian.Uint64(after[bootKernelSector:]); got != lba {
		t.Errorf("boot.img kernel sector = %d, want %d", got, lba)
	}
	if after[bootDriveCheck] != 0x90 || after[bootDriveCheck+1] != 0x90 {
		t.Error("boot.img drive check not replaced by NOPs")
	}
	// Apart from the patched fields, the MBR code is boot.img's.
	for i := 0; i < mbrCodeSize; i++ {
		if (i >= bootKernelSector && i < bootKernelSector+8) || i == bootDriveCheck || i == bootDriveCheck+1 {
			continue
		}
		if after[i] != boot[i] {
			t.Fatalf("MBR byte %#x = %#x, boot.img has %#x", i, after[i], boot[i])
		}
	}
	got := make([]byte, len(core))
	f.ReadAt(got, parts[0].Start)
	bl := got[sector-blocklistSize : sector]
	if start := binary.LittleEndian.Uint64(bl); start != lba+1 {
		t.Errorf("diskboot block list start = %d, want %d", start, lba+1)
	}
	if n := int(binary.LittleEndian.Uint16(bl[8:])); n != (len(core)+sector-1)/sector-1 {
		t.Errorf("diskboot block list length = %d sectors for a %d-byte core", n, len(core))
	}
	if !bytes.Equal(got[sector:], core[sector:]) {
		t.Error("core.img after its first sector differs from grub-mkimage's output")
	}
}

func TestInstallBIOSRefuses(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Truncate(4 << 20)
	fake := make([]byte, 3*sector) // block list says 0 sectors follow
	for _, tc := range []struct {
		name       string
		core       []byte
		off, room  int64
		wantSubstr string
	}{
		{"offset zero", fake, 0, 1 << 20, "not a sector after the MBR"},
		{"unaligned", fake, 1000, 1 << 20, "not a sector after the MBR"},
		{"no room", fake, sector, sector, "make the bios_grub partition bigger"},
		{"truncated", fake[:100], sector, 1 << 20, "truncated"},
		{"not a core image", fake, sector, 1 << 20, "not an i386-pc core.img"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := InstallBIOS(f, tc.core, tc.off, tc.room)
			if err == nil || !strings.Contains(err.Error(), tc.wantSubstr) {
				t.Fatalf("err = %v, want %q", err, tc.wantSubstr)
			}
		})
	}
}

func TestConfigRender(t *testing.T) {
	c := Config{RootUUID: testUUID, Kernel: "/boot/vmlinuz-6.1.0-1-amd64", Initrd: "/boot/initrd.img-6.1.0-1-amd64",
		Cmdline: " console=ttyS0,115200n8 ", Timeout: 2, Title: "ConPaaS 'x'"}
	s := c.Render()
	for _, want := range []string{
		"search --no-floppy --fs-uuid --set=root " + testUUID,
		"linux /boot/vmlinuz-6.1.0-1-amd64 root=UUID=" + testUUID + " ro console=ttyS0,115200n8\n",
		"initrd /boot/initrd.img-6.1.0-1-amd64",
		"set timeout=2",
		"menuentry 'ConPaaS x'",
		"serial --unit=0 --speed=115200",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("grub.cfg lacks %q:\n%s", want, s)
		}
	}
}

// Without a console= in the template, the serial console is added.
func TestConfigRenderDefaultConsole(t *testing.T) {
	s := Config{RootUUID: testUUID, Kernel: "/boot/vmlinuz", Cmdline: "quiet"}.Render()
	if !strings.Contains(s, " ro console=tty0 console=ttyS0,115200n8 quiet\n") {
		t.Errorf("grub.cfg has no serial console:\n%s", s)
	}
}
