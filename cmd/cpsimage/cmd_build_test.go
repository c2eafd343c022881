package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/conpaas/cps/builders"
	"github.com/conpaas/cps/images/catalogue"
	"github.com/conpaas/cps/images/checksum"
	"github.com/conpaas/cps/internal/testutil"
	"github.com/conpaas/cps/plan"
)

// Images are built after what they are made from: an ova after its disk,
// an image after the images its file provisioners copy in; -only builds
// those too. The provisioner then copies the artifact built in this run.
func TestBuildOrder(t *testing.T) {
	p := &plan.Plan{Images: []plan.Image{
		{Name: "ova", Kind: plan.KindOVA, Source: "disk"},
		{Name: "disk", Kind: plan.KindRaw, Provisioners: []plan.Provisioner{{Type: "file", Image: "lxc", Destination: "/x.img"}}},
		{Name: "lxc", Kind: plan.KindLXC},
	}}
	for only, want := range map[string]string{"": "lxc disk ova", "disk": "lxc disk", "lxc": "lxc"} {
		order, err := buildOrder(p, only)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, img := range order {
			names = append(names, img.Name)
		}
		if got := strings.Join(names, " "); got != want {
			t.Errorf("-only %q: order %q, want %q", only, got, want)
		}
	}
	cyc := &plan.Plan{Images: []plan.Image{{Name: "a", Provisioners: []plan.Provisioner{{Image: "a"}}}}}
	if _, err := buildOrder(cyc, ""); err == nil || !strings.Contains(err.Error(), "made from itself") {
		t.Errorf("cycle: %v", err)
	}

	// The builder's working copy copies in the artifact; the plan is
	// left as inspect shows it.
	disk := p.Image("disk")
	if _, err := (builders.Options{Built: map[string]*builders.Result{}}).Working(disk); err == nil || !strings.Contains(err.Error(), `copies in image "lxc"`) {
		t.Errorf("unbuilt input: %v", err)
	}
	w, err := builders.Options{Built: map[string]*builders.Result{"lxc": {Path: "/out/conpaas-lxc.img", Entry: "/tmp/lxc.catalogue.json"}}}.Working(disk)
	if err != nil || w.Provisioners[0].Source != "/out/conpaas-lxc.img" || w.Provisioners[0].Catalogue != "/tmp/lxc.catalogue.json" || disk.Provisioners[0].Source != "" {
		t.Errorf("built input: %v %+v, plan %+v", err, w.Provisioners, disk.Provisioners[0])
	}
}

// The catalogue entry an image copied into another carries: what the build
// records, its file the artifact's name, its build time SOURCE_DATE_EPOCH
// (so the carrying image stays reproducible).
func TestWriteEntry(t *testing.T) {
	dir := t.TempDir()
	art := filepath.Join(dir, "conpaas-lxc.img")
	if err := os.WriteFile(art, []byte("fs"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &plan.Plan{InputsDigest: "d", Images: []plan.Image{{Name: "conpaas-lxc", Kind: plan.KindLXC, Arch: "amd64", Version: "2.1.0"}}}
	res := &builders.Result{Path: art, Sums: checksum.Sums{MD5: "0123456789abcdef0123456789abcdef", SHA256: strings.Repeat("ab", 32)}}
	f, err := writeEntry(t.TempDir(), p, &p.Images[0], res, 1700000000)
	if err != nil {
		t.Fatal(err)
	}
	c, err := catalogue.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	a := c.Find("conpaas-lxc")
	if len(c.Artifacts) != 1 || a == nil || a.File != "conpaas-lxc.img" || a.Version != "2.1.0" || string(a.Kind) != "lxc" || string(a.Arch) != "amd64" ||
		a.Size != 2 || a.MD5 != res.Sums.MD5 || a.SHA256 != res.Sums.SHA256 || !a.Built.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("entry %+v", c.Artifacts)
	}
}

// cpsimage build gives every builder the cache directory $CPS_CACHE
// (default /var/cache/cps); issue 14: the sdcard builder got none, so an SD
// card build downloaded every package again. The options come from the
// function runBuild uses, and the SD-card builder is the one cpsimage
// registers: run with a canceled context it stops at mmdebstrap, after
// making its package cache directory, which must be CPS_CACHE/apt/ARCH.
func TestBuildCacheDir(t *testing.T) {
	for _, c := range []struct{ env, want string }{
		{"", "/var/cache/cps"}, // the documented default (cpsimage help environment)
		{"/srv/cps-cache", "/srv/cps-cache"},
	} {
		opt := buildOptions("", 0, false, func(k string) string {
			if k == "CPS_CACHE" {
				return c.env
			}
			return ""
		})
		if opt.CacheDir != c.want {
			t.Errorf("CPS_CACHE=%q: CacheDir %q, want %q", c.env, opt.CacheDir, c.want)
		}
	}
	// CPS_NO_TREE_CACHE (cpsimage help environment) reaches the builders
	// as an option; builders/rootfs reads no environment.
	for env, want := range map[string]bool{"": false, "1": true} {
		opt := buildOptions("", 0, false, func(k string) string {
			return map[string]string{"CPS_NO_TREE_CACHE": env}[k]
		})
		if opt.NoTreeCache != want || opt.Rootfs().NoTreeCache != want {
			t.Errorf("CPS_NO_TREE_CACHE=%q: NoTreeCache %v, want %v", env, opt.NoTreeCache, want)
		}
	}

	testutil.RequireTool(t, "mmdebstrap")
	cache := filepath.Join(t.TempDir(), "cache")
	opt := buildOptions(t.TempDir(), 1700000000, false, func(k string) string {
		return map[string]string{"CPS_CACHE": cache}[k]
	})
	b, err := builders.Get(plan.KindSDCard)
	if err != nil {
		t.Fatal(err)
	}
	// No cache_dir in the template, as in every shipped one; the mirror is
	// a closed local port so nothing leaves the machine.
	img := plan.Image{Name: "card", Kind: plan.KindSDCard, Arch: "arm64",
		Distribution: plan.Distribution{Suite: "bookworm", Mirror: "http://127.0.0.1:1/debian"}}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := b.Build(ctx, &plan.Plan{InputsDigest: "cache"}, &img, opt); err == nil {
		t.Fatal("a canceled build succeeded")
	}
	want := filepath.Join(cache, "apt", "arm64")
	if st, err := os.Stat(want); err != nil || !st.IsDir() {
		t.Errorf("the sdcard build did not use the package cache %s: %v", want, err)
	}
}
