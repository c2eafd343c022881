// Package ova builds VirtualBox appliances (the ConPaaS Nutshell and the
// RPi backend VM): the disk of another image block (or an existing raw
// image) converted to a streamOptimized VMDK, an OVF 1.0 descriptor for the
// template's virtual hardware, and a manifest, in a POSIX tar with the
// descriptor first, as the OVF specification requires.
package ova

import (
	"archive/tar"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/conpaas/cps/builders"
	"github.com/conpaas/cps/builders/plan"
	"github.com/conpaas/cps/images/checksum"
	"github.com/conpaas/cps/images/sparse"
	"github.com/conpaas/cps/images/vmdk"
	"github.com/conpaas/cps/internal/atomicfile"
	"github.com/conpaas/cps/internal/progress"
)

func init() { builders.Add(plan.KindOVA, Builder{}) }

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
	if srcPath == "" {
		return nil, fmt.Errorf("image %q: no source disk; set source to an image block name or a raw image file", img.Name)
	}
	vm := img.VM
	if vm == nil {
		return nil, fmt.Errorf("image %q: no vm block", img.Name)
	}
	if vm.DiskController == "" {
		vm.DiskController = "sata"
	}
	if vm.Name == "" {
		vm.Name = img.Name
	}
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

	out := img.Output
	if out == "" {
		out = img.Name + ".ova"
	}
	if opt.OutputDir != "" {
		out = filepath.Join(opt.OutputDir, filepath.Base(out))
	}
	base := strings.TrimSuffix(filepath.Base(out), ".ova")
	diskName := base + "-disk1.vmdk"
	ovfName := base + ".ovf"

	// 1. The VMDK, in a temporary file beside the output (its size goes in
	//    the tar header and the descriptor before its bytes).
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+base+"-vmdk-*")
	if err != nil {
		return nil, err
	}
	defer func() { tmp.Close(); os.Remove(tmp.Name()) }()
	bar := progress.New("vmdk "+filepath.Base(srcPath), st.Size())
	vs, err := vmdk.Write(ctx, tmp, src, vmdk.Options{AdapterType: "ide", Progress: bar})
	bar.Finish()
	if err != nil {
		return nil, fmt.Errorf("image %q: convert %s to VMDK: %w", img.Name, srcPath, err)
	}

	// 2. Descriptor and manifest.
	ovf, err := renderOVF(vm, img.Version, diskName, vs.Written, st.Size(), sparse.DataBytes(ext))
	if err != nil {
		return nil, err
	}
	newHash, algo := sha256.New, "SHA256"
	if vm.SHA1Manifest {
		// VirtualBox before 5.0 reads only SHA1 manifests.
		newHash, algo = sha1.New, "SHA1"
	}
	ovfSum := hashBytes(newHash(), ovf)
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	h := newHash()
	if _, err := io.Copy(h, tmp); err != nil {
		return nil, err
	}
	mf := fmt.Sprintf("%s(%s)= %s\n%s(%s)= %x\n", algo, ovfName, ovfSum, algo, diskName, h.Sum(nil))

	// 3. The tar: descriptor first, then the disk, then the manifest.
	f, err := atomicfile.Create(out, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Abort()
	mtime := time.Now()
	if opt.SourceDateEpoch > 0 {
		mtime = time.Unix(opt.SourceDateEpoch, 0)
	}
	tw := tar.NewWriter(f)
	add := func(name string, size int64, r io.Reader) error {
		hdr := &tar.Header{Name: name, Mode: 0o644, Size: size, ModTime: mtime.UTC().Truncate(time.Second), Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("OVA %s: %w", name, err)
		}
		if _, err := io.Copy(tw, r); err != nil {
			return fmt.Errorf("OVA %s: %w", name, err)
		}
		return nil
	}
	if err := add(ovfName, int64(len(ovf)), strings.NewReader(string(ovf))); err != nil {
		return nil, err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	if err := add(diskName, vs.Written, tmp); err != nil {
		return nil, err
	}
	if err := add(base+".mf", int64(len(mf)), strings.NewReader(mf)); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	algos, err := checksum.ParseAlgos(img.Checksums)
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
	return &builders.Result{Path: out, Sums: sums, DataBytes: fst.Size(), WrittenBytes: fst.Size() + vs.Written}, nil
}

func hashBytes(h hash.Hash, b []byte) string {
	h.Write(b)
	return fmt.Sprintf("%x", h.Sum(nil))
}
