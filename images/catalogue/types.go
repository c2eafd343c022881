package catalogue

import (
	"slices"
	"strings"
)

// The catalogue is the contract between cpsimage (which writes it) and
// cpsdirector and `cpsimage register` (which read it): what an artifact is
// and where it can be started is said with these typed values, so a reader
// never needs the template the artifact was built from.

// Kind is what a builder made (the template's image kind).
type Kind string

// Kinds.
const (
	KindRaw    Kind = "raw"    // a bootable disk image (conpaas.img)
	KindSDCard Kind = "sdcard" // a Raspberry Pi SD-card image
	KindOVA    Kind = "ova"    // a VirtualBox appliance
	KindLXC    Kind = "lxc"    // an ext4 filesystem Nova's libvirt LXC driver boots as a container
)

// Kinds lists every kind, for messages and validation.
var Kinds = []Kind{KindRaw, KindSDCard, KindOVA, KindLXC}

// BuiltFormat is the format cpsimage build writes an artifact of kind k
// in: an appliance is a tar, every other kind raw bytes.
func (k Kind) BuiltFormat() Format {
	if k == KindOVA {
		return FormatOVA
	}
	return FormatRaw
}

// Format is how the file's bytes are laid out: what was (or is to be)
// uploaded, which a cloud must be told (Glance's disk_format). A raw
// kind converted with `cpsimage convert` is still KindRaw, in FormatQCOW2.
type Format string

// Formats.
const (
	FormatRaw   Format = "raw"   // byte for byte (also an LXC filesystem image)
	FormatQCOW2 Format = "qcow2" // QEMU copy-on-write v2/v3
	FormatVMDK  Format = "vmdk"  // VMware disk (streamOptimized or monolithic)
	FormatOVA   Format = "ova"   // a tar of an OVF descriptor, manifest and disks
)

// Arch is a Debian architecture name.
type Arch string

// Architectures.
const (
	ArchAMD64 Arch = "amd64"
	ArchARM64 Arch = "arm64"
	ArchARMHF Arch = "armhf"
)

// Arches lists every architecture.
var Arches = []Arch{ArchAMD64, ArchARM64, ArchARMHF}

// BootMode is a firmware interface the image boots from.
type BootMode string

// Boot modes.
const (
	BootBIOS BootMode = "bios" // legacy BIOS: MBR boot code, GRUB's core in the BIOS boot partition
	BootUEFI BootMode = "uefi" // UEFI: an EFI system partition with a loader
)

// BootModes is a set of boot modes, kept sorted (bios before uefi).
type BootModes []BootMode

// Has says whether m is in the set.
func (b BootModes) Has(m BootMode) bool { return slices.Contains(b, m) }

// String is "bios,uefi", "" for none.
func (b BootModes) String() string {
	s := make([]string, len(b))
	for i, m := range b {
		s[i] = string(m)
	}
	return strings.Join(s, ",")
}

// NewBootModes makes the sorted set of the modes that are true.
func NewBootModes(bios, uefi bool) BootModes {
	var b BootModes
	if bios {
		b = append(b, BootBIOS)
	}
	if uefi {
		b = append(b, BootUEFI)
	}
	return b
}

// Cloud is the kind of cloud a registration is in.
type Cloud string

// Clouds.
const (
	CloudEC2       Cloud = "ec2"
	CloudOpenStack Cloud = "openstack"
)
