package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestCommitReplacesAndAbortLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "conpaas.img")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}

	// An aborted write leaves the old file and no temporary behind.
	f, err := Create(p, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("half-written")
	f.Abort()
	assertContent(t, p, "old")
	assertOnlyFile(t, dir, "conpaas.img")

	// A committed write replaces it whole.
	if err := WriteFile(p, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	assertContent(t, p, "new")
	assertOnlyFile(t, dir, "conpaas.img")
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", st.Mode().Perm())
	}

	// Commit twice is an error, not a silent success.
	f, _ = Create(p, 0o644)
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := f.Commit(); err == nil {
		t.Error("second Commit succeeded")
	}
}

func TestCreateInMissingDirFails(t *testing.T) {
	if _, err := Create(filepath.Join(t.TempDir(), "nope", "x"), 0o644); err == nil {
		t.Fatal("Create in a missing directory succeeded")
	}
}

func assertContent(t *testing.T, p, want string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil || string(b) != want {
		t.Fatalf("%s = %q, %v; want %q", p, b, err, want)
	}
}

func assertOnlyFile(t *testing.T, dir, name string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != name {
		var n []string
		for _, e := range ents {
			n = append(n, e.Name())
		}
		t.Fatalf("dir has %v, want only %s", n, name)
	}
}

// A symbolic link is written through: the target gets the new content
// and the link stays (issue 15: resize and fmt replaced links with regular
// files). A dangling link's target is created.
func TestSymlinkFollowed(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "real.img")
	os.WriteFile(target, []byte("old"), 0o644)
	link := filepath.Join(dir, "link.img")
	os.Symlink("real.img", link)
	if err := WriteFile(link, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatal("the link was replaced")
	}
	assertContent(t, target, "new")
	dangling := filepath.Join(dir, "dangling")
	os.Symlink("sub-target", dangling)
	if err := WriteFile(dangling, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	assertContent(t, filepath.Join(dir, "sub-target"), "x")
}

// Temporary files of a killed run (no lock held, not brand new) are
// removed by the next write of the same file; those of a live writer and
// fresh ones are left alone.
func TestStaleTemporariesRemoved(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "conpaas.img")
	old := time.Now().Add(-time.Hour)
	mk := func(name string, age time.Time) string {
		q := filepath.Join(dir, name)
		os.WriteFile(q, []byte("partial"), 0o644)
		os.Chtimes(q, age, age)
		return q
	}
	dead := mk(".conpaas.img.tmp-111", old)
	deadScratch := mk(".conpaas.img.tmp-root-222", old)
	fresh := mk(".conpaas.img.tmp-333", time.Now())
	other := mk(".other.img.tmp-444", old)
	live, err := Create(p, 0o644) // holds its lock until Commit/Abort
	if err != nil {
		t.Fatal(err)
	}
	old2 := time.Now().Add(-time.Hour)
	os.Chtimes(live.Name(), old2, old2)
	if err := WriteFile(p, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	for q, want := range map[string]bool{dead: false, deadScratch: false, fresh: true, other: true, live.Name(): true} {
		if _, err := os.Stat(q); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", filepath.Base(q), err == nil, want)
		}
	}
	live.Abort()
}
