package testutil

import (
	"os"
	"path/filepath"
	"testing"
)

// ExampleTemplates copies the example templates with the repository layout
// they name relative to themselves (scripts/nutshell, scripts/sdcard, and a
// bin/cpsdirector stand-in for what `make build` makes) into a temporary
// directory, and returns the copied templates. repo is the repository's
// root; there must be at least min templates.
func ExampleTemplates(t testing.TB, repo string, min int) []string {
	t.Helper()
	repo, err := filepath.Abs(repo)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	for _, d := range []string{"hcl/templates/examples", "scripts/nutshell", "scripts/sdcard"} {
		if err := os.CopyFS(filepath.Join(root, d), os.DirFS(filepath.Join(repo, d))); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/cpsdirector"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tmpls, _ := filepath.Glob(filepath.Join(root, "hcl/templates/examples/*.pkr.hcl"))
	if len(tmpls) < min {
		t.Fatalf("found %d example templates, want at least %d", len(tmpls), min)
	}
	return tmpls
}
