package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/conpaas/cps/internal/testutil"
)

// Issue 15, crashes: a crafted GPT header (valid CRC, entry count
// 2147483647 × size 4294967295, or 4294967295 × 128) panicked or ran out
// of memory in go-diskfs, reached from verify --structure, sdcard resize
// and verify --deep, and left /tmp/cps-verify-table-* behind. Each is now
// one clear error in a process that exits normally.
func TestCraftedGPTCommands(t *testing.T) {
	tmp := t.TempDir()
	for _, c := range [][2]uint32{{2147483647, 4294967295}, {4294967295, 128}} {
		dir := t.TempDir()
		disk := testutil.CraftedGPT(4<<20, c[0], c[1])
		img := filepath.Join(dir, "crafted.img")
		os.WriteFile(img, disk, 0o644)
		sum := md5.Sum(disk)
		hexsum := hex.EncodeToString(sum[:])
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		tw := tar.NewWriter(zw)
		tw.WriteHeader(&tar.Header{Name: "crafted.img", Mode: 0o644, Size: int64(len(disk)), Typeflag: tar.TypeReg})
		tw.Write(disk)
		tw.Close()
		zw.Close()
		tgz := filepath.Join(dir, "crafted.img.tar.gz")
		os.WriteFile(tgz, buf.Bytes(), 0o644)
		tgzSum := md5.Sum(buf.Bytes())

		for _, tc := range []struct {
			args []string
			code int
			out  string
		}{
			{[]string{"verify", "--structure", "--md5", hexsum, img}, 1, "not a valid partition table"},
			{[]string{"verify", "--deep", "--md5", hex.EncodeToString(tgzSum[:]), tgz}, 1, "not a valid partition table"},
			{[]string{"sdcard", "resize", img, "--size", "8MiB"}, 1, "not a valid partition table"},
		} {
			cmd := cpsimage(t, tc.args...)
			cmd.Env = append(cmd.Env, "TMPDIR="+tmp)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			cmd.Run()
			if code := cmd.ProcessState.ExitCode(); code != tc.code || !strings.Contains(out.String(), tc.out) || strings.Contains(out.String(), "panic") {
				t.Errorf("count %d size %d: %v: exit %d, output:\n%s\nwant exit %d and %q", c[0], c[1], tc.args, code, out.String(), tc.code, tc.out)
			}
		}
		if st, _ := os.Stat(img); st.Size() != 4<<20 {
			t.Errorf("resize changed the crafted image")
		}
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("left in TMPDIR: %v", left)
	}
}

// Issue 15, data loss: `convert -o a.img a.img`, and `convert raw.vmdk`
// (whose default output is its own name), replaced the source with the
// VMDK and exited 0. Writing onto the input, by name or through a link,
// is refused and the source stays as it was.
func TestConvertRefusesItsInput(t *testing.T) {
	dir := t.TempDir()
	data := bytes.Repeat([]byte("raw disk"), 8192) // 64 KiB
	for _, name := range []string{"a.img", "raw.vmdk"} {
		os.WriteFile(filepath.Join(dir, name), data, 0o644)
	}
	os.Symlink("a.img", filepath.Join(dir, "link.vmdk"))
	os.Link(filepath.Join(dir, "a.img"), filepath.Join(dir, "hard.vmdk"))
	for _, args := range [][]string{
		{"convert", "-o", filepath.Join(dir, "a.img"), filepath.Join(dir, "a.img")},
		{"convert", filepath.Join(dir, "raw.vmdk")},
		{"convert", "-o", filepath.Join(dir, "link.vmdk"), filepath.Join(dir, "a.img")},
		{"convert", "-o", filepath.Join(dir, "hard.vmdk"), filepath.Join(dir, "a.img")},
	} {
		code, _, errs := run(t, args...)
		if code != 2 || !strings.Contains(errs, "onto the input") {
			t.Errorf("%v: exit %d, %q; want a refusal (exit 2)", args, code, errs)
		}
	}
	for _, name := range []string{"a.img", "raw.vmdk"} {
		if b, _ := os.ReadFile(filepath.Join(dir, name)); !bytes.Equal(b, data) {
			t.Errorf("%s was changed", name)
		}
	}
	if fi, err := os.Lstat(filepath.Join(dir, "link.vmdk")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the symlink was replaced")
	}
}

// Issue 15, crashes: `validate /dev/zero` grew without bound (4 GB RSS)
// and ignored SIGTERM; 1 MB of random bytes took 21 s and printed 14,045
// error lines. Both now stop at once with a short report (exit 2).
func TestValidateNonTemplates(t *testing.T) {
	random := make([]byte, 1<<20)
	rand.New(rand.NewSource(15)).Read(random)
	p := filepath.Join(t.TempDir(), "random.hcl")
	os.WriteFile(p, random, 0o644)
	for _, tc := range []struct{ path, want string }{
		{"/dev/zero", "limit"},
		{p, "Not a text file"},
	} {
		start := time.Now()
		cmd := cpsimage(t, "validate", tc.path)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		cmd.Start()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Fatalf("validate %s still running after 30 s", tc.path)
		}
		if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(errb.String(), tc.want) || strings.Count(errb.String(), "\n") > 5 {
			t.Errorf("validate %s: exit %d, stderr %.500q", tc.path, code, errb.String())
		}
		// The old main took 21 s and printed 14,045 lines for the random
		// megabyte; bounded reading answers in well under a second (10 s
		// leaves room for a loaded machine).
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("validate %s took %v", tc.path, d)
		}
		if rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss; rss > 200<<10 {
			t.Errorf("validate %s: max RSS %d KiB (the old main grew to 4 GB on /dev/zero)", tc.path, rss)
		}
	}
}

// A template that cannot be read is bad input, exit 2 from validate and
// inspect as from fmt: a directory and a link loop exited 1 (a missing
// file 2), and a directory said only "open DIR: is a directory".
func TestValidateUnreadableTemplates(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "templates")
	os.Mkdir(sub, 0o755)
	loop := filepath.Join(dir, "loop.pkr.hcl")
	os.Symlink("loop.pkr.hcl", loop)
	tests := []struct {
		name, path, want string
	}{
		{"directory", sub, "template " + sub + " is a directory: name one template file, e.g. " + filepath.Join(sub, "NAME.pkr.hcl")},
		{"link loop", loop, "too many levels of symbolic links"},
		{"missing", filepath.Join(dir, "nope.pkr.hcl"), "no such file or directory"},
	}
	for _, tc := range tests {
		for _, command := range []string{"validate", "inspect"} {
			t.Run(command+" "+tc.name, func(t *testing.T) {
				code, _, errs := run(t, command, tc.path)
				if code != 2 || !strings.Contains(errs, tc.want) {
					t.Errorf("exit %d (want 2), stderr %q; want %q", code, errs, tc.want)
				}
			})
		}
	}
}

// Issue 15: a 512 MiB .ovf member made `ova inspect` use 1.8 GB; random
// bytes as the VMDK passed `verify --structure`; a tampered disk under a
// SHA512 manifest line was "manifest: OK".
func TestOVAInputs(t *testing.T) {
	dir := t.TempDir()
	// A sparse tar: a 512 MiB descriptor of zeros costs no disk space.
	big := filepath.Join(dir, "big.ova")
	f, _ := os.Create(big)
	tw := tar.NewWriter(f)
	tw.WriteHeader(&tar.Header{Name: "a.ovf", Mode: 0o644, Size: 512 << 20})
	tw.Flush()
	f.Truncate(512 + 512<<20 + 1024) // the body (a hole) and the end-of-archive blocks
	f.Close()
	cmd := cpsimage(t, "ova", "inspect", big)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Run()
	rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss // KiB
	if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(out.String(), "over the 4194304") || rss > 200<<10 {
		t.Errorf("ova inspect of a 512 MiB descriptor: exit %d, max RSS %d KiB, output %q", code, rss, out.String())
	}

	random := make([]byte, 256<<10)
	rand.New(rand.NewSource(15)).Read(random)
	vm := filepath.Join(dir, "random.vmdk")
	os.WriteFile(vm, random, 0o644)
	sum := md5.Sum(random)
	if code, stdout, errs := run(t, "verify", "--structure", "--md5", hex.EncodeToString(sum[:]), vm); code != 1 || !strings.Contains(stdout, "not a VMDK") {
		t.Errorf("verify --structure random.vmdk: exit %d, %q %q", code, stdout, errs)
	}

	// A real disk, tampered after its SHA512 line was written.
	raw := filepath.Join(dir, "disk.img")
	os.WriteFile(raw, bytes.Repeat([]byte("disk"), 1<<18), 0o644)
	disk := filepath.Join(dir, "disk.vmdk")
	if code, _, errs := run(t, "convert", "-o", disk, raw); code != 0 {
		t.Fatal(errs)
	}
	vmdkBytes, _ := os.ReadFile(disk)
	ovf := []byte(`<?xml version="1.0"?><Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"><VirtualSystem ovf:id="t"/></Envelope>`)
	mf := fmt.Sprintf("SHA512(t.ovf)= %x\nSHA512(t-disk1.vmdk)= %x\n", sha512.Sum512(ovf), sha512.Sum512(vmdkBytes))
	vmdkBytes[len(vmdkBytes)-2000] ^= 1
	ova := filepath.Join(dir, "t.ova")
	f, _ = os.Create(ova)
	tw = tar.NewWriter(f)
	for _, m := range []struct {
		n string
		b []byte
	}{{"t.ovf", ovf}, {"t-disk1.vmdk", vmdkBytes}, {"t.mf", []byte(mf)}} {
		tw.WriteHeader(&tar.Header{Name: m.n, Mode: 0o644, Size: int64(len(m.b))})
		tw.Write(m.b)
	}
	tw.Close()
	f.Close()
	if code, stdout, errs := run(t, "ova", "inspect", ova); code != 1 || strings.Contains(stdout, "manifest: OK") || !strings.Contains(stdout, "t-disk1.vmdk: SHA512 is") {
		t.Errorf("ova inspect of a tampered disk: exit %d, %q %q", code, stdout, errs)
	}
}

// fmt of a symlink replaced the link with a regular file and left the
// target unchanged; flash onto a directory or a character device exited
// 1 where the docs say 2 (a target that cannot be a card is a usage
// error, like one too small or in use).
func TestFmtSymlinkAndFlashTargets(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real.pkr.hcl")
	os.WriteFile(real, []byte("image \"x\" {\nkind=\"raw\"\n}\n"), 0o644)
	link := filepath.Join(dir, "t.pkr.hcl")
	os.Symlink("real.pkr.hcl", link)
	if code, _, errs := run(t, "fmt", link); code != 0 {
		t.Fatalf("fmt: exit %d %s", code, errs)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Error("fmt replaced the symlink")
	}
	if b, _ := os.ReadFile(real); !strings.Contains(string(b), "kind = \"raw\"") {
		t.Errorf("the link's target was not formatted: %q", b)
	}
	img := filepath.Join(dir, "sd.img")
	os.WriteFile(img, bytes.Repeat([]byte{1}, 1<<20), 0o644)
	for _, target := range []string{t.TempDir(), "/dev/null"} {
		if code, _, errs := run(t, "flash", img, target); code != 2 || !strings.Contains(errs, "neither a block device nor a regular file") {
			t.Errorf("flash onto %s: exit %d, %q; want 2", target, code, errs)
		}
	}
}

// fmt renamed its formatted output over a FIFO it had read (the FIFO was
// gone, a regular file in its place, exit 0) and said "stat -: no such
// file or directory" for standard input. What it cannot rewrite in place
// is refused before anything is read; -check still reads it.
func TestFmtRefusesNonFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "t.pkr.hcl")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	unformatted := "a   =  1\n"
	tests := []struct {
		name  string
		args  []string
		stdin string
		code  int
		want  string // in stderr, or for code 1 in stdout
	}{
		{"FIFO", []string{"fmt", fifo}, "", 2, fifo + " is a FIFO, not a regular file, and fmt rewrites files in place: format a copy of it"},
		{"standard input", []string{"fmt", "-"}, unformatted, 2, "cannot rewrite standard input: save it to a file"},
		{"a character device", []string{"fmt", "/dev/null"}, "", 2, "/dev/null is a device, not a regular file"},
		{"-check reads standard input", []string{"fmt", "-check", "-"}, unformatted, 1, "-\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := execIn(dir, tc.stdin, cpsimage(t, tc.args...))
			got := res.stderr
			if tc.code == 1 {
				got = res.stdout
			}
			if res.code != tc.code || !strings.Contains(got, tc.want) {
				t.Errorf("exit %d (want %d), want %q in %s", res.code, tc.code, tc.want, res)
			}
		})
	}
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("the FIFO was replaced: %v %v", fi.Mode(), err)
	}
}

// convert exited 2 (the usage code) on I/O errors. A write that fails
// (here: the file size limit, as on a full disk) exits 1 and leaves no
// temporary file.
func TestConvertIOErrorExits1(t *testing.T) {
	prlimit := testutil.RequireTool(t, "prlimit")
	dir := t.TempDir()
	src := filepath.Join(dir, "rnd.img")
	data := make([]byte, 4<<20)
	rand.New(rand.NewSource(15)).Read(data)
	os.WriteFile(src, data, 0o644)
	exe, _ := os.Executable()
	cmd := exec.Command(prlimit, "--fsize=200000", "--", exe, "convert", "-o", filepath.Join(dir, "out.vmdk"), src)
	cmd.Env = append(os.Environ(), "CPSIMAGE_TEST_AS_MAIN=1")
	out, _ := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(string(out), "file too large") {
		t.Errorf("convert with a failing write: exit %d, %s; want 1", code, out)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".out.vmdk*")); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
}

// Issue 15: output = "../../../../../../etc/cps-evil.img" and an image
// label "../../../tmp/x" were accepted and written there; an empty label
// wrote ".img". Each is refused at its file:line:col (exit 2); an
// absolute directory is the command line's (build -o DIR) to give.
func TestTemplateOutputsStayInside(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, src, want string
	}{
		{"output up", "image \"x\" {\n  kind   = \"raw\"\n  output = \"../../../../../../etc/cps-evil.img\"\n}\n", "t.pkr.hcl:3:12: error: Output outside the output directory"},
		{"absolute output", "image \"x\" {\n  kind   = \"raw\"\n  output = \"/etc/cps-evil.img\"\n}\n", "t.pkr.hcl:3:12: error: Output outside the output directory"},
		{"label up", "image \"../../../tmp/x\" {\n  kind = \"raw\"\n}\n", "t.pkr.hcl:1:7: error: Invalid image name"},
		{"empty label", "image \"\" {\n  kind = \"raw\"\n}\n", "t.pkr.hcl:1:7: error: Invalid image name"},
		{"label with a newline", "image \"a\\nb\" {\n  kind = \"raw\"\n}\n", "t.pkr.hcl:1:7: error: Invalid image name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, "t.pkr.hcl")
			os.WriteFile(p, []byte(tc.src), 0o644)
			code, _, errs := run(t, "validate", p)
			if code != 2 || !strings.Contains(errs, tc.want) {
				t.Errorf("validate: exit %d, %q; want 2 and %q", code, errs, tc.want)
			}
		})
	}
	p := filepath.Join(dir, "ok.pkr.hcl")
	os.WriteFile(p, []byte("image \"x\" {\n  kind   = \"raw\"\n  output = \"sub/x.img\"\n}\n"), 0o644)
	if code, _, errs := run(t, "validate", p); code != 0 {
		t.Errorf("a relative output below the directory: exit %d %s", code, errs)
	}
}

// A template that never ends (a FIFO whose writer keeps sending a line now
// and then, like /dev/zero would at any pace) is read only up to the
// template limit, and SIGTERM ends the read at once (issue 15: `validate
// /dev/zero` grew to 4 GB and ignored SIGTERM).
func TestValidateEndlessStreamSIGTERM(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "endless.pkr.hcl")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := cpsimage(t, "validate", fifo)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	opened := make(chan struct{})
	go func() {
		// Opening for writing returns once cpsimage has opened the FIFO,
		// which it does after installing its signal handler.
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		close(opened)
		if err != nil {
			return
		}
		defer w.Close()
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
				if _, err := w.Write([]byte("# still coming\n")); err != nil {
					return
				}
			}
		}
	}()
	defer close(stop)
	select {
	case <-opened:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("validate did not open the FIFO in 20 s")
	}
	time.Sleep(300 * time.Millisecond) // some lines read; the read is waiting for more
	start := time.Now()
	if !signalAndWait(cmd, syscall.SIGTERM) {
		t.Fatalf("validate still reading 10 s after SIGTERM; stderr %q", errb.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != 130 {
		t.Errorf("validate after SIGTERM: exit %d, stderr %q; want 130", code, errb.String())
	}
	t.Logf("validate ended %v after SIGTERM: %s", time.Since(start), strings.TrimSpace(errb.String()))
}
