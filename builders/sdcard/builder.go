package sdcard

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/conpaas/cps/builders"
	"github.com/conpaas/cps/builders/disk"
	"github.com/conpaas/cps/builders/rootfs"
	"github.com/conpaas/cps/images/checksum"
	"github.com/conpaas/cps/images/ptable"
	"github.com/conpaas/cps/plan"
)

func init() {
	builders.Register(builders.Spec{Kind: plan.KindSDCard, Builder: Builder{}, Prepare: Prepare,
		Defaults: builders.Defaults{Arch: "arm64", Size: plan.SDCardSize, Alignment: DefaultAlignment, PartitionTable: ptable.MBR, Ext: ".img"}})
}

// Prepare fills the defaults of an sdcard image (size, alignment, table,
// architecture, partitions, and a distribution with the Pi firmware's
// component), lays out its partitions and refuses what a Raspberry Pi
// cannot boot.
func Prepare(img *plan.Image) error {
	if err := Layout(img); err != nil {
		return err
	}
	d := &img.Distribution
	if len(d.Components) == 0 {
		d.Components = []string{"main", "non-free-firmware"}
	}
	if !slices.Contains(d.Components, "non-free-firmware") {
		return fmt.Errorf("image %q: the Pi firmware (raspi-firmware) is in the non-free-firmware component; add it to distribution components", img.Name)
	}
	rootfs.DistributionDefaults(d)
	return nil
}

// Builder builds `image` blocks of kind sdcard.
type Builder struct{}

// Build bootstraps the arm root filesystem, makes the boot partition's
// files from it, and assembles the sparse SD-card image at img.Output.
func (Builder) Build(ctx context.Context, p *plan.Plan, in *plan.Image, opt builders.Options) (*builders.Result, error) {
	img, err := opt.Working(in)
	if err != nil {
		return nil, err
	}
	if err := Layout(img); err != nil {
		return nil, err
	}
	img.Output = in.OutputPath(opt.OutputDir)
	if img.Output == "" {
		return nil, fmt.Errorf("image %q: no output path; set output in the image block or pass -o DIR", img.Name)
	}
	outDir := filepath.Dir(img.Output)
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("output directory: %w", err)
	}
	seed := img.Name
	if p != nil && p.InputsDigest != "" {
		seed = p.InputsDigest + "/" + img.Name
	}
	// The work tree lives next to the output: same filesystem, so the
	// temporary filesystem images are cheap to copy and never fill /tmp.
	work, err := os.MkdirTemp(outDir, ".cps-sdcard-*")
	if err != nil {
		return nil, fmt.Errorf("work directory: %w", err)
	}
	if opt.KeepWorkDir {
		opt.UI.Logf("sdcard: keeping work directory %s", work)
	} else {
		defer os.RemoveAll(work)
	}
	rootDir, bootDir := filepath.Join(work, "root"), filepath.Join(work, "boot")
	if err := os.Mkdir(bootDir, 0o755); err != nil {
		return nil, err
	}
	if err := Bootstrap(ctx, opt.Rootfs(), img, rootDir, img.Distribution.CacheDir, opt.SourceDateEpoch); err != nil {
		return nil, fmt.Errorf("image %q: %w", img.Name, err)
	}
	rootUUID := ""
	for i, pt := range img.Partitions {
		if pt.FS == "ext4" {
			rootUUID = disk.PartUUID(img.PartitionTable, img.Partitions, i, seed)
		}
	}
	if err := configureRoot(rootDir, img, seed, rootUUID); err != nil {
		return nil, fmt.Errorf("image %q: %w", img.Name, err)
	}
	ver, err := BootFiles(rootDir, bootDir, img.Arch, rootUUID, img.Bootloader.Cmdline)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", img.Name, err)
	}
	opt.UI.Logf("sdcard: boot partition with kernel %s, root=PARTUUID=%s", ver, rootUUID)

	before := writtenBytes()
	data, err := Assemble(ctx, opt.UI, img, bootDir, rootDir, seed, opt.SourceDateEpoch)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", img.Name, err)
	}
	written := writtenBytes() - before

	algos, err := builders.HashAlgos(img)
	if err != nil {
		return nil, err
	}
	bar := opt.UI.New("checksum", img.Size)
	sums, err := checksum.File(ctx, img.Output, checksum.Options{Algos: algos, Progress: bar})
	bar.Finish()
	if err != nil {
		return nil, err
	}
	if err := checksum.WriteSideFiles(img.Output, sums, algos...); err != nil {
		return nil, err
	}
	return &builders.Result{Path: img.Output, Sums: sums, DataBytes: data, WrittenBytes: written}, nil
}

// configureRoot writes what ties the root filesystem to this card: fstab
// by PARTUUID, the boot partition's mount point, and raspi-firmware's
// defaults so a kernel upgrade on the Pi writes the same cmdline.txt.
func configureRoot(rootDir string, img *plan.Image, seed, rootUUID string) error {
	var fstab strings.Builder
	fstab.WriteString("# Written by cps; partitions by PARTUUID (MBR disk signature + number).\n")
	// The firmware partition and swap are nofail: a slow udev (an emulated
	// or loaded board) must not stop the boot in emergency mode.
	for i, pt := range img.Partitions {
		id := "PARTUUID=" + disk.PartUUID(img.PartitionTable, img.Partitions, i, seed)
		switch pt.FS {
		case "ext4":
			fmt.Fprintf(&fstab, "%s\t%s\text4\trw,noatime,errors=remount-ro\t0\t1\n", id, orDefault(pt.Mount, "/"))
		case "vfat":
			m := orDefault(pt.Mount, "/boot/firmware")
			fmt.Fprintf(&fstab, "%s\t%s\tvfat\trw,noatime,nofail\t0\t2\n", id, m)
			if err := os.MkdirAll(filepath.Join(rootDir, m), 0o755); err != nil {
				return err
			}
		case "swap":
			fmt.Fprintf(&fstab, "%s\tnone\tswap\tsw,nofail\t0\t0\n", id)
		}
	}
	if err := os.MkdirAll(filepath.Join(rootDir, "etc/default"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(rootDir, "etc/fstab"), []byte(fstab.String()), 0o644); err != nil {
		return err
	}
	def := "# Written by cps: keep cmdline.txt as the image was built.\nROOTPART=PARTUUID=" + rootUUID + "\nCONSOLES=\"tty0 ttyS1,115200\"\n"
	return os.WriteFile(filepath.Join(rootDir, "etc/default/raspi-firmware"), []byte(def), 0o644)
}

// writtenBytes is what this process and its finished children have written
// to storage so far (getrusage block output), for the write-budget figure.
func writtenBytes() int64 {
	var self, kids unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &self)
	unix.Getrusage(unix.RUSAGE_CHILDREN, &kids)
	return (self.Oublock + kids.Oublock) * 512
}
