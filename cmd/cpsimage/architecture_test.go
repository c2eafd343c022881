package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/conpaas/cps/builders"
	"github.com/conpaas/cps/hcl/template"
	"github.com/conpaas/cps/images/verify"
)

// TestAddAKindChecklist keeps docs/architecture.md's "Add a kind" list
// true for every kind cpsimage has: the kind's package is wired in by the
// one import line, its spec is complete, an example template of it loads
// through its Prepare, it has its docs page, and verify --structure finds
// a blank file with its extension broken.
func TestAddAKindChecklist(t *testing.T) {
	repo := filepath.Join("..", "..")
	arch, err := os.ReadFile(filepath.Join(repo, "docs/architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	imports, err := os.ReadFile("builders_import.go")
	if err != nil {
		t.Fatal(err)
	}
	// A package under builders/ that registers a kind, imported by the
	// one line in builders_import.go (else cpsimage would not know it).
	srcs, _ := filepath.Glob(filepath.Join(repo, "builders/*/*.go"))
	registering := 0
	for _, f := range srcs {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "builders.Register(") {
			continue
		}
		registering++
		pkg := "github.com/conpaas/cps/builders/" + filepath.Base(filepath.Dir(f))
		if !strings.Contains(string(imports), `"`+pkg+`"`) {
			t.Errorf("%s registers a kind but cmd/cpsimage/builders_import.go does not import %s", f, pkg)
		}
	}
	kinds := builders.Kinds()
	if registering != len(kinds) || len(kinds) < 4 {
		t.Errorf("%d packages register a kind, %d kinds are registered (%v)", registering, len(kinds), kinds)
	}

	// The kinds the example templates and the embedded default use, each
	// image prepared by its kind.
	examples := map[string]string{}
	for _, p := range exampleTemplates(t) {
		pl, err := template.Load(p, template.Options{})
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		for _, img := range pl.Images {
			examples[img.Kind] = filepath.Base(p)
		}
	}
	name, src := template.Default()
	pl, err := template.LoadSource(name, src, t.TempDir(), template.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range pl.Images {
		examples[img.Kind] = name
	}

	for _, kind := range kinds {
		spec, err := builders.Lookup(kind)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(spec.Defaults.Ext, ".") || spec.Defaults.Arch == "" || spec.Prepare == nil || spec.Builder == nil {
			t.Errorf("kind %q: incomplete spec %+v", kind, spec)
		}
		if examples[kind] == "" {
			t.Errorf("kind %q: no example template in hcl/templates/examples uses it", kind)
		}
		if _, err := os.Stat(filepath.Join(repo, "docs", kind+".md")); err != nil {
			t.Errorf("kind %q: no docs page: %v", kind, err)
		}
		if !strings.Contains(string(arch), kind) {
			t.Errorf("kind %q: docs/architecture.md does not name it", kind)
		}
		// verify --structure of a blank artifact of the kind: it must say
		// what is wrong (a kind without a structure check passes it).
		blank := filepath.Join(t.TempDir(), "blank"+spec.Defaults.Ext)
		if err := os.WriteFile(blank, make([]byte, 4<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		rep, err := verify.File(t.Context(), blank, nil, kind, verify.Options{Structure: true})
		if err == nil && len(rep.Problems) == 0 {
			t.Errorf("kind %q: verify --structure finds nothing wrong with 4 MiB of zeros named %s (checked %v)", kind, filepath.Base(blank), rep.Checked)
		}
	}
}
