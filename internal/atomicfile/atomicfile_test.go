package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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

// The final rename replaces whatever is at the path: `cpsimage convert -o
// /dev/full` (as root) put a regular file in place of the device, and -o
// naming a directory did all the work before failing at the rename. Such
// targets are refused up front, and nothing is created next to them; a
// missing or unwritable directory is named with what to do.
func TestCreateRefusesTargets(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o755)
	// A device node of our own (a regression must not replace /dev/null).
	null := filepath.Join(dir, "null")
	if err := unix.Mknod(null, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		os.WriteFile(null, nil, 0o644) // not root: the case is skipped below
	}
	link := filepath.Join(dir, "null-link")
	os.Symlink("null", link)
	tests := []struct {
		name, path, want string
	}{
		{"character device", null, null + " is a character device, not a regular file, and writing it would replace it with one: name a regular file to write"},
		{"link to a device", link, "null-link is a character device, not a regular file"},
		{"FIFO", fifo, fifo + " is a FIFO, not a regular file"},
		{"directory", sub, sub + " is a directory: name the file to write, e.g. " + filepath.Join(sub, "NAME")},
		{"missing directory", filepath.Join(dir, "nope", "x.vmdk"), "the directory " + filepath.Join(dir, "nope") + "/ does not exist; create it first or write elsewhere"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if fi, err := os.Stat(null); strings.Contains(tc.name, "device") && (err != nil || fi.Mode().IsRegular()) {
				t.Skip("mknod needs root")
			}
			f, err := Create(tc.path, 0o644)
			if err == nil {
				f.Abort()
				t.Fatalf("Create(%s) succeeded", tc.path)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v\nwant %q", err, tc.want)
			}
		})
	}
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("the FIFO was replaced")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 4 {
		t.Errorf("%d entries in %s, want the 4 made here (no temporary file left)", len(ents), dir)
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
