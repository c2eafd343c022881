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

// build is one appliance build and what each step leaves for the next.
type build struct {
	ctx   context.Context
	img   *plan.Image
	opt   builders.Options
	out   string // the .ova
	base  string // its name without .ova: the members' names
	epoch int64

	srcPath  string
	src      *os.File
	srcSize  int64 // the source disk's apparent size
	srcData  int64 // its allocated bytes
	diskName string
	ovfName  string

	// The descriptor and manifest are written with room reserved and
	// filled in at the end (see reserve).
	newHash  func() hash.Hash
	algo     string
	reserved []byte // the descriptor at its widest
	mfLen    int
	format   tar.Format
	mfOff    int64 // where the manifest's data starts
	diskOff  int64 // where the disk's tar header starts
	vmdkSize int64
	diskSum  hash.Hash

	mtime time.Time // of every member

	f    *atomicfile.File
	sums checksum.Sums
	size int64
}

// Build implements builders.Builder: the named steps below, in order.
func (Builder) Build(ctx context.Context, p *plan.Plan, img *plan.Image, opt builders.Options) (*builders.Result, error) {
	b := &build{ctx: ctx, img: img, opt: opt, out: img.OutputPath(opt.OutputDir), epoch: opt.SourceDateEpoch}
	if err := b.source(p); err != nil {
		return nil, err
	}
	defer b.src.Close()
	if err := b.reserve(); err != nil {
		return nil, err
	}
	f, err := atomicfile.Create(b.out, 0o644)
	if err != nil {
		return nil, err
	}
	b.f = f
	defer f.Abort()
	for _, step := range []func() error{b.writeDisk, b.writeHeaders, b.checksum} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	b.opt.UI.Logf("ova: %s: %d bytes (VMDK %d bytes from %d bytes of disk data)", b.out, b.size, b.vmdkSize, b.srcData)
	return &builders.Result{Path: b.out, Sums: b.sums, DataBytes: b.size, WrittenBytes: b.size}, nil
}

// source opens the appliance's disk: the artifact of the source image
// built earlier in this run, or the file the template names.
func (b *build) source(p *plan.Plan) error {
	img := b.img
	b.srcPath = img.Source
	if r, ok := b.opt.Built[img.Source]; ok {
		b.srcPath = r.Path
	} else if p.Image(img.Source) != nil {
		return fmt.Errorf("image %q: its source image %q has not been built in this run; build both (no -only) or give a file", img.Name, img.Source)
	}
	if b.srcPath == "" || img.VM == nil {
		return fmt.Errorf("image %q: not prepared (no source disk or vm); run builders.Prepare on it first", img.Name)
	}
	src, err := os.Open(b.srcPath)
	if err != nil {
		return fmt.Errorf("image %q: source disk: %w", img.Name, err)
	}
	st, err := src.Stat()
	if err != nil {
		src.Close()
		return err
	}
	ext, err := sparse.DataExtents(src)
	if err != nil {
		src.Close()
		return err
	}
	b.src, b.srcSize, b.srcData = src, st.Size(), sparse.DataBytes(ext)
	b.base = strings.TrimSuffix(filepath.Base(b.out), ".ova")
	b.diskName = b.base + "-disk1.vmdk"
	b.ovfName = b.base + ".ovf"
	return nil
}

// descriptor is the OVF for a VMDK of vmdkBytes.
func (b *build) descriptor(vmdkBytes int64) ([]byte, error) {
	return renderOVF(b.img.VM, b.img.Version, b.diskName, vmdkBytes, b.srcSize, b.srcData)
}

// manifest is the .mf for the descriptor's and the disk's digests.
func (b *build) manifest(ovfSum, diskSum string) string {
	return fmt.Sprintf("%s(%s)= %s\n%s(%s)= %s\n", b.algo, b.ovfName, ovfSum, b.algo, b.diskName, diskSum)
}

// reserve plans the archive. The VMDK is streamed straight into the OVA,
// after the descriptor and the manifest, which need its size and digest:
// those two entries are written with room reserved (the descriptor is
// padded with trailing whitespace, which XML allows after the root
// element; the manifest's lines have a fixed length) and filled in at the
// end, as is the disk's tar header. So no temporary copy of the disk is
// ever made.
func (b *build) reserve() error {
	b.mtime = time.Now()
	if b.epoch > 0 {
		b.mtime = time.Unix(b.epoch, 0)
	}
	b.newHash, b.algo = sha256.New, "SHA256"
	if b.img.VM.SHA1Manifest {
		// VirtualBox before 5.0 reads only SHA1 manifests.
		b.newHash, b.algo = sha1.New, "SHA1"
	}
	var err error
	if b.reserved, err = b.descriptor(math.MaxInt64); err != nil { // the widest size
		return err
	}
	zeroSum := strings.Repeat("0", 2*b.newHash().Size())
	b.mfLen = len(b.manifest(zeroSum, zeroSum))
	// USTAR holds sizes below 8 GiB; a bigger disk (the VMDK is at most a
	// little larger than the raw image) gets GNU's base-256 size field,
	// which keeps the header one block long and VirtualBox reads.
	b.format = tar.FormatUSTAR
	if b.srcSize > 7<<30 {
		b.format = tar.FormatGNU
	}
	// Layout: [hdr][descriptor, padded][hdr][manifest, padded][hdr][vmdk, padded][2 zero blocks].
	// The order the issue and VMware's ovftool use: descriptor, manifest,
	// then the disk, so a streaming reader can check the disk as it comes.
	ovfOff := int64(tarBlock)
	b.mfOff = ovfOff + roundBlock(int64(len(b.reserved))) + tarBlock
	b.diskOff = b.mfOff + roundBlock(int64(b.mfLen))
	return nil
}

// writeDisk streams the source disk as a VMDK into its place, hashing it,
// and ends the archive.
func (b *build) writeDisk() error {
	if _, err := b.f.Seek(b.diskOff+tarBlock, io.SeekStart); err != nil {
		return err
	}
	b.diskSum = b.newHash()
	bar := b.opt.UI.New("vmdk "+filepath.Base(b.srcPath), b.srcSize)
	vs, err := vmdk.Write(b.ctx, io.MultiWriter(b.f, b.diskSum), b.src, vmdk.Options{AdapterType: "ide", Progress: bar})
	bar.Finish()
	if err != nil {
		return fmt.Errorf("image %q: convert %s to VMDK: %w", b.img.Name, b.srcPath, err)
	}
	b.vmdkSize = vs.Written
	// Pad the disk entry and end the archive with two zero blocks.
	_, err = b.f.Write(make([]byte, roundBlock(vs.Written)-vs.Written+2*tarBlock))
	return err
}

// header is one tar header block.
func (b *build) header(name string, size int64) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{Name: name, Mode: 0o644, Size: size, ModTime: b.mtime.UTC().Truncate(time.Second), Typeflag: tar.TypeReg, Format: b.format}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, fmt.Errorf("OVA %s: %w", name, err)
	}
	tw.Flush()
	if buf.Len() != tarBlock {
		return nil, fmt.Errorf("OVA %s: tar header is %d bytes", name, buf.Len())
	}
	return buf.Bytes(), nil
}

// writeHeaders fills in the reserved descriptor and manifest and the three
// tar headers, now that the disk's size and digest are known.
func (b *build) writeHeaders() error {
	ovf, err := b.descriptor(b.vmdkSize)
	if err != nil {
		return err
	}
	if pad := len(b.reserved) - len(ovf); pad > 0 {
		ovf = append(append(ovf, bytes.Repeat([]byte(" "), pad-1)...), '\n')
	}
	mf := b.manifest(hashBytes(b.newHash(), ovf), fmt.Sprintf("%x", b.diskSum.Sum(nil)))
	for _, e := range []struct {
		off  int64
		name string
		data []byte
	}{{0, b.ovfName, ovf}, {b.mfOff - tarBlock, b.base + ".mf", []byte(mf)}, {b.diskOff, b.diskName, nil}} {
		size := int64(len(e.data))
		if e.data == nil {
			size = b.vmdkSize
		}
		h, err := b.header(e.name, size)
		if err != nil {
			return err
		}
		if _, err := b.f.WriteAt(append(h, e.data...), e.off); err != nil {
			return fmt.Errorf("OVA %s: %w", e.name, err)
		}
	}
	return b.f.Sync()
}

// checksum hashes the finished appliance and renames it into place.
func (b *build) checksum() error {
	algos, err := builders.HashAlgos(b.img)
	if err != nil {
		return err
	}
	if b.sums, err = checksum.File(b.ctx, b.f.Name(), checksum.Options{Algos: algos}); err != nil {
		return err
	}
	fst, err := b.f.Stat()
	if err != nil {
		return err
	}
	b.size = fst.Size()
	return b.f.Commit()
}

const tarBlock = 512

func roundBlock(n int64) int64 { return (n + tarBlock - 1) / tarBlock * tarBlock }

func hashBytes(h hash.Hash, b []byte) string {
	h.Write(b)
	return fmt.Sprintf("%x", h.Sum(nil))
}
