// Package plan is the build plan: the fully resolved, validated form of a
// template. The hcl package produces it; builders, verifiers and registrars
// consume it. It holds plain values only (no HCL types) so every consumer can
// be tested without a template, and so `cpsimage inspect` can print it as JSON.
package plan

import "path/filepath"

// Kinds of artifact a builder can produce.
const (
	KindRaw    = "raw"    // conpaas.img: a bootable x86_64 (or arm64) disk image
	KindSDCard = "sdcard" // Raspberry Pi SD-card image
	KindOVA    = "ova"    // VirtualBox appliance (Nutshell, RPi backend VM)
	KindLXC    = "lxc"    // ext4 filesystem image Nova's libvirt LXC driver mounts as a container's root
)

// SDCardSize is the exact size in bytes of the published ConPaaS Raspberry Pi
// card image (from the seeds: a "32 GB" card holds 31998345216 bytes): the
// sdcard kind's default size and what verify --structure requires of a card.
const SDCardSize int64 = 31998345216

// Registration targets.
const (
	TargetEC2EBS = "ec2-ebs"
	TargetEC2S3  = "ec2-s3"
	TargetGlance = "glance"
)

// Plan is everything one template asks for.
type Plan struct {
	// TemplatePath is the file the plan came from ("<embedded>" for the default).
	TemplatePath string `json:"template"`
	// Dir is the directory relative paths in the template resolve against.
	Dir string `json:"dir"`
	// InputsDigest is a SHA256 over the template sources, resolved variables
	// and referenced files: two builds with the same digest (and the same
	// package snapshot) must produce the same bytes.
	InputsDigest string     `json:"inputs_digest"`
	Images       []Image    `json:"images"`
	Registers    []Register `json:"registers,omitempty"`
}

// Image returns the image named name, or nil.
func (p *Plan) Image(name string) *Image {
	for i := range p.Images {
		if p.Images[i].Name == name {
			return &p.Images[i]
		}
	}
	return nil
}

// Image is one artifact to build.
type Image struct {
	Name    string `json:"name"`
	Kind    string `json:"kind"`    // KindRaw | KindSDCard | KindOVA | KindLXC
	Arch    string `json:"arch"`    // Debian architecture: amd64, arm64, armhf
	Version string `json:"version"` // ConPaaS version the image carries, e.g. "2.1.0"
	// Output is the artifact path (absolute once resolved).
	Output string `json:"output"`
	// Size is the exact size in bytes of the disk image (raw, sdcard), of
	// the appliance's disk (ova) or of the filesystem image (lxc).
	Size int64 `json:"size"`
	// Alignment is the byte boundary every partition starts on (default 1 MiB;
	// 4 MiB for SD cards, the erase-block size).
	Alignment int64 `json:"alignment"`
	// PartitionTable is "gpt" or "mbr".
	PartitionTable string `json:"partition_table"`

	Distribution Distribution  `json:"distribution"`
	Partitions   []Partition   `json:"partitions"`
	Bootloader   Bootloader    `json:"bootloader"`
	Provisioners []Provisioner `json:"provisioners,omitempty"`
	// Checksums lists side files to write: "md5", "sha1", "sha256", "sha512".
	Checksums []string `json:"checksums"`
	// Env is passed to every provisioner (template `environment` map), e.g.
	// DIRECTOR_URL, CONTROLLER_IP.
	Env map[string]string `json:"env,omitempty"`
	// Hostname is written to /etc/hostname (raw images); "" means Name.
	Hostname string `json:"hostname,omitempty"`
	// NoContextualize leaves out the ConPaaS contextualization service and
	// /root/config.cfg: the image is not a ConPaaS service VM but, like the
	// Nutshell, a host that runs ConPaaS (template: contextualize = false).
	NoContextualize bool `json:"no_contextualize,omitempty"`

	// Source (ova only) names another image block whose output is the
	// appliance's disk, or a path to an existing raw image.
	Source string `json:"source,omitempty"`
	// VM (ova only) describes the virtual hardware.
	VM *VM `json:"vm,omitempty"`
}

// OutputPath is where the image's artifact is written: its Output, or,
// when the command line names an output directory (build -o DIR), the
// file of that name in DIR. Every reader of an artifact path goes through
// it, so build, verify and register agree.
func (img *Image) OutputPath(outDir string) string {
	if outDir == "" {
		return img.Output
	}
	return filepath.Join(outDir, filepath.Base(img.Output))
}

// Distribution says which Debian root filesystem to bootstrap.
type Distribution struct {
	Suite      string   `json:"suite"`      // bookworm
	Mirror     string   `json:"mirror"`     // http://deb.debian.org/debian
	Components []string `json:"components"` // main, non-free-firmware
	Variant    string   `json:"variant"`    // mmdebstrap variant: minbase, important, standard
	Packages   []string `json:"packages"`
	// CacheDir keeps downloaded .debs so a rebuild does not fetch them again.
	CacheDir string `json:"cache_dir"`
}

// Partition is one entry in the partition table, in table order.
type Partition struct {
	Name string `json:"name"`
	// FS is the content: "ext4", "vfat" (FAT32), "swap", "bios_grub" (raw
	// space for GRUB's core image), "esp" (FAT EFI system partition), "none".
	FS    string `json:"fs"`
	Label string `json:"label,omitempty"`
	// Size in bytes; 0 means "fill" (the template's `*`): the rest of the
	// disk not taken by the partitions after it.
	Size  int64  `json:"size"`
	Mount string `json:"mount,omitempty"` // mount point in the image's fstab, "" for none
	// UUID of the filesystem (ext4/vfat/swap); derived deterministically from
	// the image name and inputs digest when empty, for reproducibility.
	UUID string `json:"uuid,omitempty"`
	// Start and End (exclusive) in bytes, filled by the layout step.
	Start int64 `json:"start,omitempty"`
	End   int64 `json:"end,omitempty"`
}

// Bootloader says how the image boots.
type Bootloader struct {
	Type    string `json:"type"` // "grub", "raspi" (firmware on the FAT partition), "none"
	BIOS    bool   `json:"bios"`
	UEFI    bool   `json:"uefi"`
	Cmdline string `json:"cmdline"` // extra kernel command line, e.g. "console=ttyS0,115200n8"
	Timeout int    `json:"timeout"` // menu timeout in seconds
}

// Provisioner customises the root filesystem after bootstrap.
type Provisioner struct {
	Type string `json:"type"` // "shell" or "file"
	// shell: Inline commands or a Script path (host path), run inside the
	// root filesystem's chroot with Env set.
	Inline []string          `json:"inline,omitempty"`
	Script string            `json:"script,omitempty"`
	Env    map[string]string `json:"env,omitempty"`
	// file: copy Source (host path, file or directory) to Destination
	// (absolute path inside the image) with Mode (octal string, optional).
	Source      string `json:"source,omitempty"`
	Destination string `json:"destination,omitempty"`
	Mode        string `json:"mode,omitempty"`
	// Image (file, instead of Source) names another image block of the
	// template: its built artifact is copied in (the Nutshell carries the
	// services image this way). The build sets Source to the artifact.
	Image string `json:"image,omitempty"`
	// Catalogue (with Image) is a catalogue file holding the copied
	// artifact's entry, set in the builder's working copy and copied in
	// next to it as DESTINATION.catalogue.json: the image it lands in can
	// register the artifact and tell a director what it is (the Nutshell
	// does).
	Catalogue string `json:"catalogue,omitempty"`
}

// VM is the virtual hardware of an appliance.
type VM struct {
	Name           string `json:"name"`
	OSType         string `json:"os_type"` // VirtualBox ostype, e.g. "Debian_64"
	CPUs           int    `json:"cpus"`
	MemoryMiB      int    `json:"memory_mib"`
	DiskController string `json:"disk_controller"` // "sata" | "ide"
	NICs           []NIC  `json:"nics"`
	// SHA1Manifest writes SHA1 digests in the .mf (for old VirtualBox) instead of SHA256.
	SHA1Manifest bool `json:"sha1_manifest,omitempty"`
}

// NIC is one network adapter; the first is eth0 inside the guest.
type NIC struct {
	Type    string `json:"type"`              // "nat", "hostonly", "bridged"
	Network string `json:"network,omitempty"` // host-only network or bridged adapter name
}

// Register is one `register` block: where to publish an image.
type Register struct {
	Name   string `json:"name"`
	Target string `json:"target"` // TargetEC2EBS | TargetEC2S3 | TargetGlance
	Image  string `json:"image"`  // image block name (or a path to an artifact)

	// EC2
	Region       string            `json:"region,omitempty"`
	CopyTo       []string          `json:"copy_to,omitempty"`
	Public       bool              `json:"public,omitempty"`
	Bucket       string            `json:"bucket,omitempty"` // ec2-s3
	Method       string            `json:"method,omitempty"` // ec2-ebs: "direct" | "via-instance"; ec2-s3: "bundle" | "import"
	Instance     string            `json:"instance,omitempty"`
	Architecture string            `json:"architecture,omitempty"`
	Tags         map[string]string `json:"tags,omitempty"`
	// ec2-s3 bundles (ec2-bundle-image's -u, -c, -k and --ec2cert): the
	// AWS account id, the user's X.509 certificate and RSA private key (PEM
	// files) and EC2's certificate that the bundle key is also encrypted for.
	AccountID  string `json:"account_id,omitempty"`
	Cert       string `json:"cert,omitempty"`
	PrivateKey string `json:"private_key,omitempty"`
	EC2Cert    string `json:"ec2_cert,omitempty"`
	// ec2-ebs via-instance: where the scratch volume is attached (default
	// /dev/xvdf), its path inside the instance (default: that, else the
	// Nitro NVMe by-id link) and how to log in (user default "admin"; key
	// default ssh-agent and ~/.ssh/id_*; known_hosts default ~/.ssh/known_hosts).
	Device        string `json:"device,omitempty"`
	GuestDevice   string `json:"guest_device,omitempty"`
	SSHUser       string `json:"ssh_user,omitempty"`
	SSHKey        string `json:"ssh_key,omitempty"`
	SSHKnownHosts string `json:"ssh_known_hosts,omitempty"`
	// Command line only (-ssh-addr, -ssh-insecure-ignore-host-key): a
	// tunnel to the instance's SSH port, and no host key check.
	SSHAddr     string `json:"ssh_addr,omitempty"`
	SSHInsecure bool   `json:"ssh_insecure_ignore_host_key,omitempty"`

	// OpenStack
	Cloud           string            `json:"cloud,omitempty"` // clouds.yaml entry
	DiskFormat      string            `json:"disk_format,omitempty"`
	ContainerFormat string            `json:"container_format,omitempty"`
	Visibility      string            `json:"visibility,omitempty"`
	Properties      map[string]string `json:"properties,omitempty"`
}
