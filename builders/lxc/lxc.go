// Package lxc builds the ConPaaS services image for OpenStack with LXC
// (kind "lxc"), the variant the seeds publish as "ConPaaS VM image for
// OpenStack with LXC" (x86_64, and arm for the Raspberry Pi compute nodes).
//
// Nova's libvirt LXC driver (nova-compute-lxc) does not boot a disk: it
// attaches the instance's disk to a loop device (raw) or qemu-nbd (qcow2)
// and mounts that whole device, without looking for partitions
// (nova/virt/disk/api.py setup_container: _DiskImage with partition=None),
// as the container's root, then starts /sbin/init in it
// (nova/virt/libvirt/driver.py: os_init_path). So the image is one bare
// ext4 filesystem, as the original ConPaaS container images were (mkfs.ext3
// on the whole file): no partition table, no bootloader, no kernel, with
// systemd as init. It carries the same contextualization as conpaas.img
// (builders/raw's guest payload); a container has no serial port, so what
// contextualization prints also goes to /dev/console, which libvirt logs
// (Nova's console log).
//
// As everywhere in cps, nothing is mounted: mmdebstrap makes the tree and
// mke2fs -d writes the filesystem from it into a sparse file.
package lxc

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/conpaas/cps/builders"
	"github.com/conpaas/cps/builders/disk"
	cfs "github.com/conpaas/cps/builders/fs"
	"github.com/conpaas/cps/builders/raw"
	"github.com/conpaas/cps/builders/rootfs"
	"github.com/conpaas/cps/images/checksum"
	"github.com/conpaas/cps/images/sparse"
	"github.com/conpaas/cps/internal/atomicfile"
	"github.com/conpaas/cps/plan"
)

func init() {
	builders.Register(builders.Spec{Kind: plan.KindLXC, Builder: Builder{}, Prepare: Prepare, Bare: true,
		Defaults: builders.Defaults{Arch: "amd64", Size: 2 << 30, Ext: ".img"}})
}

// Builder builds plan.KindLXC images.
type Builder struct{}

const mib = 1 << 20

// Label is the filesystem label of every LXC image.
const Label = "conpaas-root"

// basePackages: systemd as the container's init (systemd-sysv provides
// /sbin/init, which Nova starts), networkd and resolved for DHCP and DNS on
// the veth Nova gives the container, SSH, and what contextualization needs
// to fetch ConPaaS.tar.gz over HTTPS. No kernel: the container runs on the
// compute node's.
var basePackages = []string{"systemd-sysv", "systemd-resolved", "openssh-server", "curl", "ca-certificates"}

//go:embed payload
var payload embed.FS

// containerFiles are what a container needs on top of the guest payload.
var containerFiles = []struct {
	src, dst string
}{
	{"payload/console.conf", "/etc/systemd/system/conpaas-contextualize.service.d/console.conf"},
	{"payload/fstab", "/etc/fstab"},
}

// Build implements builders.Builder.
func (Builder) Build(ctx context.Context, p *plan.Plan, in *plan.Image, opt builders.Options) (*builders.Result, error) {
	img, err := opt.Working(in)
	if err != nil {
		return nil, err
	}
	out := img.OutputPath(opt.OutputDir)
	seed := p.InputsDigest + "/" + img.Name
	epoch := opt.SourceDateEpoch

	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return nil, fmt.Errorf("output directory: %w", err)
	}
	work, err := os.MkdirTemp(filepath.Dir(out), ".cps-work-"+img.Name+"-")
	if err != nil {
		return nil, fmt.Errorf("work directory: %w", err)
	}
	if opt.KeepWorkDir {
		opt.UI.Logf("lxc: keeping work directory %s", work)
	} else {
		defer os.RemoveAll(work)
	}
	root := filepath.Join(work, "root")

	if err := rootfs.Bootstrap(ctx, opt.Rootfs(), img, root, basePackages, epoch); err != nil {
		return nil, err
	}
	if err := containerize(root, img); err != nil {
		return nil, fmt.Errorf("image %q: %w", img.Name, err)
	}

	f, err := atomicfile.Create(out, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Abort()
	if err := f.Truncate(img.Size); err != nil {
		return nil, fmt.Errorf("size %s: %w", f.Name(), err)
	}
	opt.UI.Logf("lxc: ext4 (%d MiB) from the root tree", img.Size/mib)
	if err := cfs.MakeExt4(ctx, f.File, 0, img.Size, root, Label, disk.GUID(seed, "fs:root"), epoch); err != nil {
		if errors.Is(err, cfs.ErrNoSpace) {
			return nil, fmt.Errorf("image %q: the root tree does not fit in %d MiB; raise size: %w", img.Name, img.Size/mib, err)
		}
		return nil, err
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("sync %s: %w", f.Name(), err)
	}

	algos, err := builders.HashAlgos(img)
	if err != nil {
		return nil, err
	}
	bar := opt.UI.New("hash "+filepath.Base(out), img.Size)
	sums, err := checksum.File(ctx, f.Name(), checksum.Options{Algos: algos, Progress: bar})
	bar.Finish()
	if err != nil {
		return nil, err
	}
	ext, err := sparse.DataExtents(f.File)
	if err != nil {
		return nil, err
	}
	data := sparse.DataBytes(ext)
	if err := f.Commit(); err != nil {
		return nil, err
	}
	opt.UI.Logf("lxc: %s: %d bytes, %d MiB of data, md5 %s", out, img.Size, data/mib, sums.Get(checksum.MD5))
	return &builders.Result{Path: out, Sums: sums, DataBytes: data, WrittenBytes: data}, nil
}

// Prepare fills the defaults of an LXC image and refuses what a container
// image cannot have.
func Prepare(img *plan.Image) error {
	img.Arch = cmp.Or(img.Arch, "amd64")
	switch img.Arch {
	case "amd64", "arm64", "armhf":
	default:
		return fmt.Errorf("image %q: arch %q: an LXC image is amd64, arm64 or armhf", img.Name, img.Arch)
	}
	if len(img.Partitions) > 0 {
		return fmt.Errorf("image %q: an LXC image is one filesystem that Nova mounts whole; remove its partition blocks", img.Name)
	}
	if t := img.Bootloader.Type; t != "" && t != "none" {
		return fmt.Errorf("image %q: an LXC image does not boot (the compute node's kernel runs the container); remove the bootloader block (type %q)", img.Name, t)
	}
	if img.Size <= 0 || img.Size%4096 != 0 {
		return fmt.Errorf("image %q: size %d is not a positive multiple of 4 KiB (the filesystem's block size)", img.Name, img.Size)
	}
	rootfs.DistributionDefaults(&img.Distribution)
	return nil
}

// containerize installs the guest payload and what a container needs
// instead of a VM's boot files.
func containerize(root string, img *plan.Image) error {
	// Nova starts /sbin/init (a link into /usr on merged-/usr systems).
	// Lstat: the link is absolute, meaningful inside the tree only.
	if _, err := os.Lstat(filepath.Join(root, "usr/sbin/init")); err != nil {
		return fmt.Errorf("no /sbin/init in the root filesystem (systemd-sysv failed to install?): %w", err)
	}
	if err := raw.InstallGuest(root, img, raw.GuestOptions{}); err != nil {
		return fmt.Errorf("payload: %w", err)
	}
	for _, c := range containerFiles {
		if img.NoContextualize && filepath.Dir(c.dst) == "/etc/systemd/system/conpaas-contextualize.service.d" {
			continue
		}
		b, err := payload.ReadFile(c.src)
		if err != nil {
			return err
		}
		if err := raw.WriteFile(root, c.dst, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
