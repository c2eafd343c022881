package sdcard

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/conpaas/cps/images/checksum"
	"github.com/conpaas/cps/internal/testutil"
	"github.com/conpaas/cps/plan"
)

var tiny struct {
	once sync.Once
	dir  string
	err  error
}

// buildTiny returns a fresh copy of a 256 MiB SD image (boot 64 MiB, root,
// swap 8 MiB) with .md5 and .sha256 side files: small enough to hash in a
// test. The image is assembled once per test binary.
func buildTiny(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"mkfs.ext4", "mkfs.fat", "mcopy", "debugfs", "resize2fs", "e2fsck", "md5sum", "cp"} {
		testutil.RequireTool(t, tool)
	}
	tiny.once.Do(func() {
		tiny.dir, tiny.err = os.MkdirTemp("", "cps-tiny-sd-*")
		if tiny.err == nil {
			tiny.err = assembleTiny(t, filepath.Join(tiny.dir, "rpi.img"))
		}
	})
	if tiny.err != nil {
		t.Fatal(tiny.err)
	}
	dir := t.TempDir()
	for _, n := range []string{"rpi.img", "rpi.img.md5", "rpi.img.sha256"} {
		if out, err := exec.Command("cp", "--sparse=always", filepath.Join(tiny.dir, n), dir).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
	}
	return filepath.Join(dir, "rpi.img")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if tiny.dir != "" {
		os.RemoveAll(tiny.dir)
	}
	os.Exit(code)
}

func assembleTiny(t *testing.T, out string) error {
	img := &plan.Image{Name: "rpi", Kind: plan.KindSDCard, Output: out, Size: 256 << 20,
		Partitions: []plan.Partition{
			{Name: "boot", FS: "vfat", Label: "RASPIFIRM", Size: 64 << 20, Mount: "/boot/firmware"},
			{Name: "root", FS: "ext4", Label: "RASPIROOT", Mount: "/"},
			{Name: "swap", FS: "swap", Label: "swap", Size: 8 << 20},
		}}
	if err := Layout(img); err != nil {
		return err
	}
	boot, root := smallTrees(t)
	if _, err := Assemble(context.Background(), nil, img, boot, root, "test-seed", 1700000000); err != nil {
		return err
	}
	sums, err := checksum.File(context.Background(), img.Output, checksum.Options{Algos: []checksum.Algo{checksum.MD5, checksum.SHA256}})
	if err != nil {
		return err
	}
	return checksum.WriteSideFiles(img.Output, sums, checksum.MD5, checksum.SHA256)
}

// sideFilesMatch runs md5sum -c and sha256sum -c on the side files.
func sideFilesMatch(t *testing.T, img string) bool {
	t.Helper()
	for _, tool := range []string{"md5sum", "sha256sum"} {
		cmd := exec.Command(tool, "--status", "-c", filepath.Base(img)+"."+strings.TrimSuffix(tool, "sum"))
		cmd.Dir = filepath.Dir(img)
		if cmd.Run() != nil {
			return false
		}
	}
	return true
}

// Issue 15: resize interrupted after the image grew left stale .md5 and
// .sha256 files, and a re-run refused ("already N bytes"), so they could
// not be regenerated. The interruption is reproduced by putting back the
// old side files after a resize; running the same resize again finishes
// the job.
func TestResizeFinishesInterruptedRun(t *testing.T) {
	img := buildTiny(t)
	oldMD5, _ := os.ReadFile(img + ".md5")
	oldSHA, _ := os.ReadFile(img + ".sha256")
	const newSize = 512 << 20
	res, err := Resize(t.Context(), nil, img, newSize, 0)
	if err != nil || res.Already {
		t.Fatalf("resize: %+v %v", res, err)
	}
	if !sideFilesMatch(t, img) {
		t.Fatal("side files do not match the resized image")
	}
	os.WriteFile(img+".md5", oldMD5, 0o644)
	os.WriteFile(img+".sha256", oldSHA, 0o644)
	if sideFilesMatch(t, img) {
		t.Fatal("the old side files match the resized image?")
	}
	res, err = Resize(t.Context(), nil, img, newSize, 0)
	if err != nil || !res.Already {
		t.Fatalf("re-run: %+v %v; want it to finish the interrupted run", res, err)
	}
	if !sideFilesMatch(t, img) {
		t.Error("the re-run did not bring the side files up to date")
	}
}

// Two resizes of one image both said "resized" (no lock). Now the image
// is locked while one works: a second one refuses, and one started
// together with another either refuses or finds the work done.
func TestResizeLock(t *testing.T) {
	img := buildTiny(t)
	f, _ := os.Open(img)
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	_, err := Resize(t.Context(), nil, img, 512<<20, 0)
	f.Close()
	if err == nil || !strings.Contains(err.Error(), "another process is resizing") {
		t.Fatalf("resize of a locked image: %v", err)
	}
	if st, _ := os.Stat(img); st.Size() != 256<<20 {
		t.Fatal("a refused resize changed the image")
	}

	var wg sync.WaitGroup
	results := make([]*ResizeResult, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = Resize(t.Context(), nil, img, 512<<20, 0)
		}()
	}
	wg.Wait()
	resized := 0
	for i := range 2 {
		switch {
		case errs[i] == nil && !results[i].Already:
			resized++
		case errs[i] == nil && results[i].Already:
		case strings.Contains(errs[i].Error(), "another process is resizing") || strings.Contains(errs[i].Error(), "was replaced"):
		default:
			t.Errorf("concurrent resize %d: %v", i, errs[i])
		}
	}
	if resized != 1 {
		t.Errorf("%d concurrent resizes said they resized; want exactly 1 (%v, %v)", resized, errs, results)
	}
	if !sideFilesMatch(t, img) {
		t.Error("side files do not match after the concurrent resizes")
	}
}

// Resize of a symlink replaced the link with a regular file and left the
// target unchanged. The link is followed and stays a link.
func TestResizeSymlink(t *testing.T) {
	img := buildTiny(t)
	link := filepath.Join(t.TempDir(), "card.img")
	if err := os.Symlink(img, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Resize(t.Context(), nil, link, 512<<20, 0); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link was replaced: %v %v", fi.Mode(), err)
	}
	if st, _ := os.Stat(img); st.Size() != 512<<20 {
		t.Fatalf("the target is %d bytes, want %d", st.Size(), 512<<20)
	}
	if !sideFilesMatch(t, img) {
		t.Error("the target's side files do not match")
	}
}

// An interrupted resize during e2fsck said "e2fsck … signal: killed",
// which reads like filesystem damage. It now says it was interrupted and
// that the image is unchanged; a work file a killed run left is removed
// by the next run.
func TestResizeInterruptedAndStaleFiles(t *testing.T) {
	img := buildTiny(t)
	bin := t.TempDir()
	os.WriteFile(filepath.Join(bin, "e2fsck"), []byte("#!/bin/sh\nexec sleep 60\n"), 0o755)
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(2*time.Second, cancel)
	_, err := Resize(ctx, nil, img, 512<<20, 0)
	if err == nil || !strings.Contains(err.Error(), "interrupted") || !strings.Contains(err.Error(), "unchanged") || strings.Contains(err.Error(), "not clean") {
		t.Fatalf("interrupted resize: %v", err)
	}
	if st, _ := os.Stat(img); st.Size() != 256<<20 || !sideFilesMatch(t, img) {
		t.Fatal("an interrupted resize changed the image or its side files")
	}

	// What kill -9 leaves: work files nobody holds, not brand new.
	dir := filepath.Dir(img)
	stale := []string{filepath.Join(dir, ".rpi.img.tmp-123"), filepath.Join(dir, ".rpi.img.tmp-root-456")}
	for _, p := range stale {
		os.WriteFile(p, []byte("left over"), 0o644)
		old := time.Now().Add(-time.Hour)
		os.Chtimes(p, old, old)
	}
	t.Setenv("PATH", strings.TrimPrefix(os.Getenv("PATH"), bin+":"))
	if _, err := Resize(t.Context(), nil, img, 512<<20, 0); err != nil {
		t.Fatal(err)
	}
	for _, p := range stale {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s was not removed", p)
		}
	}
}

// A root filesystem e2fsck finds damaged: the error named the scratch
// copy the check ran on (deleted by then) and carried all of e2fsck's
// output. It now names the image and the partition's offset, keeps the
// end of the output (where e2fsck's verdict is), and the image is as it was.
func TestResizeUncleanRoot(t *testing.T) {
	img := buildTiny(t)
	bin := t.TempDir()
	// e2fsck -n on a damaged filesystem: many lines, exit 4 (errors left
	// uncorrected, e2fsck(8) EXIT CODE).
	os.WriteFile(filepath.Join(bin, "e2fsck"), []byte("#!/bin/sh\nfor i in $(seq 50); do echo \"Inode $i has an invalid extent\"; done\necho \"$2: ********** WARNING: Filesystem still has errors **********\"\nexit 4\n"), 0o755)
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	_, err := Resize(t.Context(), nil, img, 512<<20, 0)
	if err == nil {
		t.Fatal("resized a filesystem e2fsck found damaged")
	}
	msg := err.Error()
	for _, want := range []string{"the root filesystem of " + img + " (the partition at byte ", "repair it first", "(43 lines before)", "Filesystem still has errors", "(a copy of it)"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, ".tmp-") || strings.Count(msg, "\n") > 10 {
		t.Errorf("error names the scratch file or carries all of e2fsck's output:\n%s", msg)
	}
	if st, _ := os.Stat(img); st.Size() != 256<<20 || !sideFilesMatch(t, img) {
		t.Fatal("a refused resize changed the image or its side files")
	}
}
