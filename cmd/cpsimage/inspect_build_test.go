package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/conpaas/cps/builders"
	"github.com/conpaas/cps/images/checksum"
	"github.com/conpaas/cps/internal/cli"
	"github.com/conpaas/cps/internal/testutil"
	"github.com/conpaas/cps/plan"
)

// recorder stands in for every kind's builder: it records, as JSON, the
// plan and the image it is given, and writes a small artifact so the
// build goes on (an ova finds its source among the built ones).
type recorder struct {
	plans, images []string
}

func (r *recorder) Build(ctx context.Context, p *plan.Plan, img *plan.Image, opt builders.Options) (*builders.Result, error) {
	pj, _ := json.Marshal(p)
	ij, _ := json.Marshal(img)
	r.plans, r.images = append(r.plans, string(pj)), append(r.images, string(ij))
	out := img.OutputPath(opt.OutputDir)
	if err := os.WriteFile(out, []byte("artifact of "+img.Name+"\n"), 0o644); err != nil {
		return nil, err
	}
	algos, err := builders.HashAlgos(img)
	if err != nil {
		return nil, err
	}
	sums, err := checksum.File(ctx, out, checksum.Options{Algos: algos})
	if err != nil {
		return nil, err
	}
	return &builders.Result{Path: out, Sums: sums}, nil
}

// TestInspectIsWhatIsBuilt (issue 14): `cpsimage inspect -json` of every
// example template and of the embedded default prints exactly the plan and
// images the builders receive from `cpsimage build` (the same command
// code; only the builders are replaced by a recorder), so no default is
// filled and nothing is changed after each kind's Prepare.
func TestInspectIsWhatIsBuilt(t *testing.T) {
	tmpls := exampleTemplates(t)
	tmpls = append(tmpls, "") // the embedded default

	old := cli.Stdout
	defer func() { cli.Stdout = old }()
	for _, tmpl := range tmpls {
		name := filepath.Base(tmpl)
		if tmpl == "" {
			name = "default"
		}
		t.Run(name, func(t *testing.T) {
			var args []string
			if tmpl != "" {
				args = []string{tmpl}
			}
			var out bytes.Buffer
			cli.Stdout = &out
			if err := runInspect(t.Context(), append([]string{"-json"}, args...)); err != nil {
				t.Fatal(err)
			}
			var inspected plan.Plan
			if err := json.Unmarshal(out.Bytes(), &inspected); err != nil {
				t.Fatal(err)
			}
			want, _ := json.Marshal(inspected)

			rec := &recorder{}
			dir := t.TempDir()
			cli.Stdout = &bytes.Buffer{}
			err := build(t.Context(), append([]string{"-o", dir, "-catalogue", filepath.Join(dir, "catalogue.json")}, args...),
				func(string) (builders.Builder, error) { return rec, nil })
			if err != nil {
				t.Fatal(err)
			}
			if len(rec.images) != len(inspected.Images) {
				t.Fatalf("%d images built, inspect shows %d", len(rec.images), len(inspected.Images))
			}
			for i, pj := range rec.plans {
				if pj != string(want) {
					t.Errorf("build %d: the builder's plan differs from inspect -json:\nbuilder %s\ninspect %s", i, pj, want)
				}
			}
			for _, ij := range rec.images {
				var img plan.Image
				json.Unmarshal([]byte(ij), &img)
				wi, _ := json.Marshal(inspected.Image(img.Name))
				if ij != string(wi) {
					t.Errorf("image %q: the builder's image differs from inspect -json:\nbuilder %s\ninspect %s", img.Name, ij, wi)
				}
			}
		})
	}
}

// exampleTemplates are the example templates in a copy of the repository
// layout they name relative to themselves.
func exampleTemplates(t *testing.T) []string { return testutil.ExampleTemplates(t, "../..", 5) }
