// Package builders is the registry of image kinds. Each kind lives in its
// own package (builders/raw, builders/sdcard, builders/ova, builders/lxc),
// which registers its Spec with one Register call in an init function; the
// template loader, cpsimage and the docs' add-a-kind test learn everything
// about a kind from its Spec, so no central code names a kind.
package builders

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"

	"github.com/conpaas/cps/builders/rootfs"
	"github.com/conpaas/cps/images/checksum"
	"github.com/conpaas/cps/internal/progress"
	"github.com/conpaas/cps/plan"
)

// Options apply to every build.
type Options struct {
	// OutputDir overrides the directory of every image's Output.
	OutputDir string
	// CacheDir holds downloaded packages and cached root filesystem trees;
	// "" means no cache. Builders never read the environment: cmd/cpsimage
	// sets it from $CPS_CACHE (default /var/cache/cps) for every kind.
	CacheDir string
	// SourceDateEpoch pins every timestamp in the image (reproducible builds);
	// 0 means "now".
	SourceDateEpoch int64
	// UI is where the build reports its progress (cpsimage passes
	// progress.Default()); nil reports nothing.
	UI *progress.UI
	// NoTreeCache bootstraps every root tree afresh (packages are still
	// cached); cpsimage sets it from $CPS_NO_TREE_CACHE.
	NoTreeCache bool
	// KeepWorkDir keeps the temporary work directory for debugging.
	KeepWorkDir bool
	// Outputs of images built earlier in the same run, by image name (an OVA
	// built from the raw image of the same template finds its disk here).
	Built map[string]*Result
}

// Result describes a built artifact.
type Result struct {
	Path string
	Sums checksum.Sums
	// DataBytes is the allocated (non-hole) size of the artifact; WrittenBytes
	// the bytes the build wrote to produce it (for the 1.1x write budget).
	DataBytes    int64
	WrittenBytes int64
	// Entry is a catalogue file holding this artifact's entry alone, which
	// cpsimage writes once the build is recorded: an image that copies this
	// one in gets it beside the copy (plan.Provisioner.Catalogue).
	Entry string
}

// Builder builds one kind of image. It receives the image as its kind's
// Prepare left it and must not change it: what `cpsimage inspect` prints
// is what gets built. What a build derives (the package cache directory,
// the paths of artifacts built earlier in the run, partition offsets and
// filesystem identifiers) it keeps in its own copy (see Working).
type Builder interface {
	Build(ctx context.Context, p *plan.Plan, img *plan.Image, opt Options) (*Result, error)
}

// Defaults are a kind's values for what an image block leaves out.
type Defaults struct {
	Arch           string // Debian architecture
	Size           int64  // bytes
	Alignment      int64  // partition alignment in bytes; 0 when unpartitioned
	PartitionTable string // "gpt", "mbr", or "" for one bare filesystem
	Ext            string // the artifact's file extension, with the dot
}

// Spec is one kind of image: everything the rest of cps knows about it.
type Spec struct {
	Kind     string // plan.KindRaw, ...
	Builder  Builder
	Defaults Defaults
	// FromSource: the image is made from another image's artifact (its
	// Source names an image block of the template or a file), so that image
	// is built first. Such a kind bootstraps no root filesystem.
	FromSource bool
	// Bare: one filesystem with no partition table and no bootloader, so
	// the template refuses partition and bootloader blocks.
	Bare bool
	// Prepare fills the kind's defaults into an image the template loader
	// made (every field the template left out), checks what the builder
	// cannot make, and returns one sentence naming the image when it
	// cannot. It runs once, right after the template is loaded (before
	// inspect, build, verify or register); running it again changes
	// nothing.
	Prepare func(img *plan.Image) error
}

var specs = map[string]*Spec{}

// Register adds a kind. Each kind's package calls it once, from init; a
// missing part is a programming error and panics at start-up.
func Register(s Spec) {
	if s.Kind == "" || s.Builder == nil || s.Prepare == nil || s.Defaults.Ext == "" {
		panic(fmt.Sprintf("builders: kind %q registered without a kind name, builder, Prepare or extension", s.Kind))
	}
	if _, dup := specs[s.Kind]; dup {
		panic(fmt.Sprintf("builders: kind %q registered twice", s.Kind))
	}
	specs[s.Kind] = &s
}

// Kinds are the registered kinds, sorted.
func Kinds() []string {
	k := make([]string, 0, len(specs))
	for n := range specs {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}

// Lookup returns the spec of kind.
func Lookup(kind string) (*Spec, error) {
	s, ok := specs[kind]
	if !ok {
		return nil, fmt.Errorf("no builder for image kind %q (known: %v)", kind, Kinds())
	}
	return s, nil
}

// Get returns the builder for kind.
func Get(kind string) (Builder, error) {
	s, err := Lookup(kind)
	if err != nil {
		return nil, err
	}
	return s.Builder, nil
}

// Prepare resolves img with its kind's Prepare: the one step between the
// template and everything that reads the plan.
func Prepare(img *plan.Image) error {
	s, err := Lookup(img.Kind)
	if err != nil {
		return err
	}
	if img.Output == "" {
		// The template always sets it; a plan made in code may not.
		out, err := filepath.Abs(img.Name + s.Defaults.Ext)
		if err != nil {
			return fmt.Errorf("image %q: output: %w", img.Name, err)
		}
		img.Output = out
	}
	return s.Prepare(img)
}

// Inputs are the names of the images of p that img is made from and that
// must therefore be built before it: its source (kinds built from a source
// image) and the images its file provisioners copy in.
func Inputs(p *plan.Plan, img *plan.Image) []string {
	var in []string
	if s, err := Lookup(img.Kind); err == nil && s.FromSource && p.Image(img.Source) != nil {
		in = append(in, img.Source)
	}
	for _, pr := range img.Provisioners {
		if pr.Image != "" {
			in = append(in, pr.Image)
		}
	}
	return in
}

// Rootfs are the options builders/rootfs gets from these.
func (o Options) Rootfs() rootfs.Options { return rootfs.Options{UI: o.UI, NoTreeCache: o.NoTreeCache} }

// PackageCache is the directory an image's downloaded .debs are kept in:
// the template's distribution.cache_dir, else CacheDir/apt/ARCH (rootfs
// keeps the cached trees beside it, in CacheDir/apt/trees/ARCH), else ""
// (no cache).
func (o Options) PackageCache(img *plan.Image) string {
	if img.Distribution.CacheDir != "" {
		return img.Distribution.CacheDir
	}
	if o.CacheDir == "" {
		return ""
	}
	return filepath.Join(o.CacheDir, "apt", img.Arch)
}

// Working is the copy of img a builder works on: the plan's image with
// what this build derives filled in, the plan itself untouched. Its
// package cache is PackageCache, and a file provisioner that copies in
// another image copies that image's artifact built earlier in this run,
// and its catalogue entry.
// Partitions, provisioners and packages are copied, so the builder may
// lay out and name partitions in place.
func (o Options) Working(img *plan.Image) (*plan.Image, error) {
	w := *img
	w.Partitions = append([]plan.Partition(nil), img.Partitions...)
	w.Provisioners = append([]plan.Provisioner(nil), img.Provisioners...)
	w.Distribution.Components = append([]string(nil), img.Distribution.Components...)
	w.Distribution.Packages = append([]string(nil), img.Distribution.Packages...)
	w.Checksums = append([]string(nil), img.Checksums...)
	if img.VM != nil {
		vm := *img.VM
		vm.NICs = append([]plan.NIC(nil), img.VM.NICs...)
		w.VM = &vm
	}
	w.Distribution.CacheDir = o.PackageCache(img)
	for i := range w.Provisioners {
		pr := &w.Provisioners[i]
		if pr.Image == "" {
			continue
		}
		res := o.Built[pr.Image]
		if res == nil {
			return nil, fmt.Errorf("image %q copies in image %q, which this run did not build", img.Name, pr.Image)
		}
		pr.Source, pr.Catalogue = res.Path, res.Entry
	}
	return &w, nil
}

// HashAlgos are the digests a builder computes over its artifact: the side
// files the image asks for (Checksums) plus MD5 and SHA256, which the
// catalogue records whatever side files are asked.
func HashAlgos(img *plan.Image) ([]checksum.Algo, error) {
	want := append([]string(nil), img.Checksums...)
	for _, m := range []string{"md5", "sha256"} {
		found := false
		for _, h := range want {
			found = found || h == m
		}
		if !found {
			want = append(want, m)
		}
	}
	algos, err := checksum.ParseAlgos(want)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", img.Name, err)
	}
	return algos, nil
}
