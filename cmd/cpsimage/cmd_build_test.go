package main

import (
	"strings"
	"testing"

	"github.com/conpaas/cps/builders"
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

	disk := p.Image("disk")
	if err := builtInputs(disk, map[string]*builders.Result{}); err == nil || !strings.Contains(err.Error(), `copies in image "lxc"`) {
		t.Errorf("unbuilt input: %v", err)
	}
	if err := builtInputs(disk, map[string]*builders.Result{"lxc": {Path: "/out/conpaas-lxc.img"}}); err != nil || disk.Provisioners[0].Source != "/out/conpaas-lxc.img" {
		t.Errorf("built input: %v %+v", err, disk.Provisioners[0])
	}
}
