// Package ova builds VirtualBox appliances (the ConPaaS Nutshell and the
// RPi backend VM): the disk of another image block (or an existing raw
// image) converted to a streamOptimized VMDK, an OVF 1.0 descriptor for the
// template's virtual hardware, and a manifest, in a POSIX tar with the
// descriptor first, as the OVF specification requires, then the manifest.
package ova

import (
	"archive/tar"
	"bytes"
	"cmp"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/conpaas/cps/builders"
	"github.com/conpaas/cps/images/checksum"
	"github.com/conpaas/cps/images/sparse"
	"github.com/conpaas/cps/images/vmdk"
	"github.com/conpaas/cps/internal/atomicfile"
	"github.com/conpaas/cps/internal/progress"
	"github.com/conpaas/cps/plan"
)

func init() {
	builders.Register(builders.Spec{Kind: plan.KindOVA, Builder: Builder{}, Prepare: Prepare, FromSource: true,
		Defaults: builders.Defaults{Arch: "amd64", Size: 2 << 30, Alignment: 1 << 20, PartitionTable: "gpt", Ext: ".ova"}})
}

// DefaultVM is the ConPaaS backend VM from the seeds: 4 CPUs, 4 GB, NIC1
// NAT (eth0), NIC2 host-only (eth1, vboxnet0 = 192.168.56.0/24).
func DefaultVM(name string) plan.VM {
	return plan.VM{Name: name, OSType: "Debian_64", CPUs: 4, MemoryMiB: 4096, DiskController: "sata",
		NICs: []plan.NIC{{Type: "nat"}, {Type: "hostonly", Network: "vboxnet0"}}}
}

// Prepare fills the virtual hardware a template leaves out with DefaultVM's
// and refuses an appliance without a source disk.
func Prepare(img *plan.Image) error {
	if img.Source == "" {
		return fmt.Errorf("image %q: no source disk; set source to an image block name or a raw image file", img.Name)
	}
	def := DefaultVM(img.Name)
	if img.VM == nil {
		img.VM = &def
		return nil
	}
	vm := img.VM
	vm.Name = cmp.Or(vm.Name, def.Name)
	vm.OSType = cmp.Or(vm.OSType, def.OSType)
	vm.CPUs = cmp.Or(vm.CPUs, def.CPUs)
	vm.MemoryMiB = cmp.Or(vm.MemoryMiB, def.MemoryMiB)
	vm.DiskController = cmp.Or(vm.DiskController, def.DiskController)
	if len(vm.NICs) == 0 {
		vm.NICs = def.NICs
	}
	return nil
}

// Builder builds plan.KindOVA images.
type Builder struct{}

// Build implements builders.Builder.
func (Builder) Build(ctx context.Context, p *plan.Plan, img *plan.Image, opt builders.Options) (*builders.Result, error) {
	srcPath := img.Source
	if r, ok := opt.Built[img.Source]; ok {
		srcPath = r.Path
	} else if p.Image(img.Source) != nil {
		return nil, fmt.Errorf("image %q: its source image %q has not been built in this run; build both (no -only) or give a file", img.Name, img.Source)
	}
	if srcPath == "" || img.VM == nil {
		return nil, fmt.Errorf("image %q: not prepared (no source disk or vm); run builders.Prepare on it first", img.Name)
	}
	vm := img.VM
	src, err := os.Open(srcPath)
	if err != nil {
		return nil, fmt.Errorf("image %q: source disk: %w", img.Name, err)
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return nil, err
	}
	ext, err := sparse.DataExtents(src)
	if err != nil {
		return nil, err
	}

	out := img.OutputPath(opt.OutputDir)
	base := strings.TrimSuffix(filepath.Base(out), ".ova")
	diskName := base + "-disk1.vmdk"
	ovfName := base + ".ovf"

	// The VMDK is streamed straight into the OVA, after the descriptor and
	// the manifest, which need its size and digest: those two entries are
	// written with room reserved (the descriptor is padded with trailing
	// whitespace, which XML allows after the root element; the manifest's
	// lines have a fixed length) and filled in at the end, as is the disk's
	// tar header. So no temporary copy of the disk is ever made.
	newHash, algo := sha256.New, "SHA256"
	if vm.SHA1Manifest {
		// VirtualBox before 5.0 reads only SHA1 manifests.
		newHash, algo = sha1.New, "SHA1"
	}
	descriptor := func(vmdkBytes int64) ([]byte, error) {
		return renderOVF(vm, img.Version, diskName, vmdkBytes, st.Size(), sparse.DataBytes(ext))
	}
	reserved, err := descriptor(math.MaxInt64) // the widest size
	if err != nil {
		return nil, err
	}
	manifest := func(ovfSum, diskSum string) string {
		return fmt.Sprintf("%s(%s)= %s\n%s(%s)= %s\n", algo, ovfName, ovfSum, algo, diskName, diskSum)
	}
	zeroSum := strings.Repeat("0", 2*newHash().Size())
	mfLen := len(manifest(zeroSum, zeroSum))
	// USTAR holds sizes below 8 GiB; a bigger disk (the VMDK is at most a
	// little larger than the raw image) gets GNU's base-256 size field,
	// which keeps the header one block long and VirtualBox reads.
	format := tar.FormatUSTAR
	if st.Size() > 7<<30 {
		format = tar.FormatGNU
	}

	f, err := atomicfile.Create(out, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Abort()
	mtime := time.Now()
	if opt.SourceDateEpoch > 0 {
		mtime = time.Unix(opt.SourceDateEpoch, 0)
	}
	header := func(name string, size int64) ([]byte, error) {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		hdr := &tar.Header{Name: name, Mode: 0o644, Size: size, ModTime: mtime.UTC().Truncate(time.Second), Typeflag: tar.TypeReg, Format: format}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("OVA %s: %w", name, err)
		}
		tw.Flush()
		if b.Len() != tarBlock {
			return nil, fmt.Errorf("OVA %s: tar header is %d bytes", name, b.Len())
		}
		return b.Bytes(), nil
	}
	// Layout: [hdr][descriptor, padded][hdr][manifest, padded][hdr][vmdk, padded][2 zero blocks].
	// The order the issue and VMware's ovftool use: descriptor, manifest,
	// then the disk, so a streaming reader can check the disk as it comes.
	ovfOff := int64(tarBlock)
	mfOff := ovfOff + roundBlock(int64(len(reserved))) + tarBlock
	diskHdrOff := mfOff + roundBlock(int64(mfLen))
	if _, err := f.Seek(diskHdrOff+tarBlock, io.SeekStart); err != nil {
		return nil, err
	}
	diskSum := newHash()
	bar := progress.New("vmdk "+filepath.Base(srcPath), st.Size())
	vs, err := vmdk.Write(ctx, io.MultiWriter(f, diskSum), src, vmdk.Options{AdapterType: "ide", Progress: bar})
	bar.Finish()
	if err != nil {
		return nil, fmt.Errorf("image %q: convert %s to VMDK: %w", img.Name, srcPath, err)
	}
	// Pad the disk entry and end the archive with two zero blocks.
	if _, err := f.Write(make([]byte, roundBlock(vs.Written)-vs.Written+2*tarBlock)); err != nil {
		return nil, err
	}

	ovf, err := descriptor(vs.Written)
	if err != nil {
		return nil, err
	}
	if pad := len(reserved) - len(ovf); pad > 0 {
		ovf = append(append(ovf, bytes.Repeat([]byte(" "), pad-1)...), '\n')
	}
	mf := manifest(hashBytes(newHash(), ovf), fmt.Sprintf("%x", diskSum.Sum(nil)))
	for _, e := range []struct {
		off  int64
		name string
		data []byte
	}{{0, ovfName, ovf}, {mfOff - tarBlock, base + ".mf", []byte(mf)}, {diskHdrOff, diskName, nil}} {
		size := int64(len(e.data))
		if e.data == nil {
			size = vs.Written
		}
		h, err := header(e.name, size)
		if err != nil {
			return nil, err
		}
		if _, err := f.WriteAt(append(h, e.data...), e.off); err != nil {
			return nil, fmt.Errorf("OVA %s: %w", e.name, err)
		}
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	algos, err := builders.HashAlgos(img)
	if err != nil {
		return nil, err
	}
	sums, err := checksum.File(ctx, f.Name(), checksum.Options{Algos: algos})
	if err != nil {
		return nil, err
	}
	fst, _ := f.Stat()
	if err := f.Commit(); err != nil {
		return nil, err
	}
	progress.Logf("ova: %s: %d bytes (VMDK %d bytes from %d bytes of disk data)", out, fst.Size(), vs.Written, sparse.DataBytes(ext))
	return &builders.Result{Path: out, Sums: sums, DataBytes: fst.Size(), WrittenBytes: fst.Size()}, nil
}

const tarBlock = 512

func roundBlock(n int64) int64 { return (n + tarBlock - 1) / tarBlock * tarBlock }

func hashBytes(h hash.Hash, b []byte) string {
	h.Write(b)
	return fmt.Sprintf("%x", h.Sum(nil))
}
