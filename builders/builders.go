// Package builders dispatches a plan's image to the builder of its kind.
// Each builder package (builders/raw, builders/sdcard, builders/ova) adds
// itself with Add in an init function; cmd/cpsimage imports them all.
package builders

import (
	"context"
	"fmt"
	"sort"

	"github.com/conpaas/cps/images/checksum"
	"github.com/conpaas/cps/plan"
)

// Options apply to every build.
type Options struct {
	// OutputDir overrides the directory of every image's Output.
	OutputDir string
	// CacheDir holds downloaded packages and other reusable inputs
	// (default $CPS_CACHE or /var/cache/cps).
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
