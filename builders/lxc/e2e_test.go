//go:build e2e

package lxc

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/conpaas/cps/builders"
	"github.com/conpaas/cps/hcl/template"
	"github.com/conpaas/cps/images/verify"
	"github.com/conpaas/cps/internal/testutil"
	"github.com/conpaas/cps/plan"
)

// TestExamplesReproducible builds each LXC example template (amd64, and
// the Raspberry Pi's armhf under qemu-user) twice with the same
// SOURCE_DATE_EPOCH: the second build bootstraps its tree again instead of
// unpacking the first one's from the tree cache, and must give the same
// MD5.
func TestExamplesReproducible(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "mmdebstrap")
	_, here, _, _ := runtime.Caller(0)
	examples := filepath.Join(filepath.Dir(here), "../../hcl/templates/examples")
	for _, tc := range []struct{ template, image string }{{"lxc.pkr.hcl", "conpaas-lxc"}, {"lxc-rpi.pkr.hcl", "conpaas-rpi"}} {
		t.Run(tc.template, func(t *testing.T) {
			var vars map[string]string
			if m := os.Getenv("CPS_MIRROR"); m != "" {
				vars = map[string]string{"mirror": m}
			}
			p, err := template.Load(filepath.Join(examples, tc.template), template.Options{Vars: vars})
			if err != nil {
				t.Fatal(err)
			}
			if p.Image(tc.image).Arch != "amd64" {
				testutil.RequireTool(t, "qemu-arm-static")
			}
			var md5 [2]string
			for i := range md5 {
				// The second build bootstraps afresh (cpsimage's
				// CPS_NO_TREE_CACHE=1).
				noTreeCache := i == 1
				img := *p.Image(tc.image)
				img.Output = filepath.Join(t.TempDir(), tc.image+".img")
				start := time.Now()
				res, err := Builder{}.Build(t.Context(), p, &img, builders.Options{CacheDir: testutil.CacheDir(), NoTreeCache: noTreeCache, SourceDateEpoch: 1700000000})
				if err != nil {
					t.Fatal(err)
				}
				md5[i] = res.Sums.MD5
				t.Logf("build %d: %s in %s, %d MiB of data", i+1, md5[i], time.Since(start).Round(time.Second), res.DataBytes>>20)
				if _, ps, err := verify.Structure(res.Path, plan.KindLXC); err != nil || len(ps) != 0 {
					t.Errorf("verify --structure: %v %v", ps, err)
				}
				os.Remove(res.Path)
			}
			if md5[0] != md5[1] {
				t.Errorf("two builds of %s differ: md5 %s and %s", tc.template, md5[0], md5[1])
			}
		})
	}
}
