// Package builders dispatches a plan's image to the builder of its kind.
// Each builder package (builders/raw, builders/sdcard, builders/ova) adds
// itself with Add in an init function; cmd/cpsimage imports them all.
package builders

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"

	"github.com/conpaas/cps/images/checksum"
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
}

// Builder builds one kind of image.
type Builder interface {
	Build(ctx context.Context, p *plan.Plan, img *plan.Image, opt Options) (*Result, error)
}

var registry = map[string]Builder{}

// Add registers b for kind (plan.KindRaw, ...).
func Add(kind string, b Builder) { registry[kind] = b }

// Get returns the builder for kind.
func Get(kind string) (Builder, error) {
	b, ok := registry[kind]
	if !ok {
		var k []string
		for n := range registry {
			k = append(k, n)
		}
		sort.Strings(k)
		return nil, fmt.Errorf("no builder for image kind %q (known: %v)", kind, k)
	}
	return b, nil
}

// PackageCache is the directory an image's downloaded .debs are kept in:
// the template's distribution.cache_dir, else CacheDir/apt/ARCH (the
// cached trees go beside it, in CacheDir/trees/ARCH), else "" (no cache).
func (o Options) PackageCache(img *plan.Image) string {
	if img.Distribution.CacheDir != "" {
		return img.Distribution.CacheDir
	}
	if o.CacheDir == "" {
		return ""
	}
	return filepath.Join(o.CacheDir, "apt", img.Arch)
}
