package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
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

const emptyMD5 = "d41d8cd98f00b204e9800998ecf8427e"

// md5sumOf is what GNU md5sum prints for path, the reference.
func md5sumOf(t *testing.T, path string) string {
	t.Helper()
	testutil.RequireTool(t, "md5sum")
	out, err := exec.Command("md5sum", path).Output()
	if err != nil {
		t.Fatalf("md5sum %s: %v", path, err)
	}
	return strings.Fields(string(out))[0]
}

// Issue 15, wrong answers: anything that was not a regular file hashed as
// empty. A block device is hashed over its BLKGETSIZE64 bytes like
// md5sum does, catalogued with its real size and converted with its real
// capacity.
func TestBlockDeviceInputs(t *testing.T) {
	dev := testutil.LoopDevice(t, 5<<20)
	want := md5sumOf(t, dev)
	if want == emptyMD5 {
		t.Fatal("md5sum says the loop device is empty")
	}
	if code, out, errs := run(t, "md5", dev); code != 0 || out != want+"  "+dev+"\n" {
		t.Errorf("md5 %s: exit %d, %q %q; md5sum says %s", dev, code, out, errs, want)
	}
	if code, out, errs := run(t, "verify", "--md5", want, dev); code != 0 || !strings.Contains(out, "OK") {
		t.Errorf("verify --md5 %s: exit %d, %q %q", dev, code, out, errs)
	}
	dir := t.TempDir()
	cat := filepath.Join(dir, "catalogue.json")
	if code, _, errs := run(t, "catalogue", "add", "-f", cat, "--name", "dev", dev); code != 0 {
		t.Fatalf("catalogue add: exit %d %s", code, errs)
	}
	var c struct {
		Artifacts []struct {
			Size int64  `json:"size"`
			MD5  string `json:"md5"`
		} `json:"artifacts"`
	}
	b, _ := os.ReadFile(cat)
	if err := json.Unmarshal(b, &c); err != nil || len(c.Artifacts) != 1 || c.Artifacts[0].Size != 5<<20 || c.Artifacts[0].MD5 != want {
		t.Errorf("catalogue records %s (%v)", b, err)
	}
	out := filepath.Join(dir, "dev.vmdk")
	if code, stdout, errs := run(t, "convert", "-o", out, dev); code != 0 || !strings.Contains(stdout, "of a 5242880-byte disk") {
		t.Errorf("convert %s: exit %d, %q %q", dev, code, stdout, errs)
	}
}

// A pipe on standard input is streamed to EOF: `cat a.img | cpsimage md5 -`
// and /dev/stdin give md5sum's digest, and `verify --md5 <empty digest>
// /dev/stdin` of a non-empty stream fails (it said OK).
func TestStdinInputs(t *testing.T) {
	data := make([]byte, 3<<20+77)
	rand.Read(data)
	p := filepath.Join(t.TempDir(), "a.img")
	os.WriteFile(p, data, 0o644)
	want := md5sumOf(t, p)
	for _, name := range []string{"-", "/dev/stdin"} {
		code, out, errs := runProc(t, data, "md5", name)
		if code != 0 || out != want+"  "+name+"\n" {
			t.Errorf("md5 %s < pipe: exit %d, %q %q; want %s", name, code, out, errs, want)
		}
	}
	if code, out, errs := runProc(t, data, "verify", "--md5", emptyMD5, "/dev/stdin"); code != 1 || !strings.Contains(out, "FAILED") || !strings.Contains(out, want) {
		t.Errorf("verify --md5 <empty> /dev/stdin: exit %d, %q %q", code, out, errs)
	}
	if code, out, _ := runProc(t, data, "verify", "--md5", want, "/dev/stdin"); code != 0 || !strings.Contains(out, "OK") {
		t.Errorf("verify --md5 right /dev/stdin: exit %d, %q", code, out)
	}
	// What needs random access refuses a stream in one sentence.
	for _, args := range [][]string{
		{"verify", "--structure", "--md5", want, "/dev/stdin"},
		{"convert", "-o", filepath.Join(t.TempDir(), "x.vmdk"), "/dev/stdin"},
		{"catalogue", "add", "-f", filepath.Join(t.TempDir(), "c.json"), "/dev/stdin"},
	} {
		code, out, errs := runProc(t, data, args...)
		if code != 2 || !strings.Contains(errs, "save it to a file first") {
			t.Errorf("%v < pipe: exit %d, %q %q; want a refusal (exit 2)", args, code, out, errs)
		}
	}
}

// A FIFO is streamed like md5sum streams it; one that nobody writes to
// blocked forever and ignored SIGINT and SIGTERM. Now either signal ends
// the wait at once with exit 130.
func TestFIFOInputs(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("conpaas "), 300000)
	p := filepath.Join(dir, "data")
	os.WriteFile(p, data, 0o644)
	want := md5sumOf(t, p)
	go func() {
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err == nil {
			w.Write(data)
			w.Close()
		}
	}()
	if code, out, errs := run(t, "md5", fifo); code != 0 || out != want+"  "+fifo+"\n" {
		t.Errorf("md5 FIFO: exit %d %q %q, want %s", code, out, errs, want)
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		for _, args := range [][]string{{"md5", fifo}, {"verify", "--md5", want, fifo}, {"validate", fifo}} {
			cmd := cpsimage(t, args...)
			var errb bytes.Buffer
			cmd.Stderr = &errb
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			waitBlockedOnFIFO(cmd.Process.Pid)
			if !signalAndWait(cmd, sig) {
				t.Fatalf("%v: still blocked 10 s after %v", args, sig)
			}
			if code := cmd.ProcessState.ExitCode(); code != 130 || !strings.Contains(errb.String(), "no writer") {
				t.Errorf("%v after %v: exit %d, stderr %q; want 130 and a message about the FIFO", args, sig, code, errb.String())
			}
		}
	}
}

// waitBlockedOnFIFO waits (up to 20 s) until a thread of process pid
// waits in the kernel for a FIFO's writer, so a signal sent next finds
// the command waiting rather than still starting up (when Go's default
// handler would kill it).
func waitBlockedOnFIFO(pid int) {
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/wchan", pid))
		for _, w := range tasks {
			if b, _ := os.ReadFile(w); string(b) == "wait_for_partner" {
				return
			}
		}
	}
}

// signalAndWait sends sig to the started command and waits up to 10 s for
// it to end; false means it did not (it is then killed and reaped, so
// cmd.ProcessState is set either way).
func signalAndWait(cmd *exec.Cmd, sig os.Signal) bool {
	cmd.Process.Signal(sig)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
		return true
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		return false
	}
}

// A FIFO with no writer named where a file is read with a plain open(2)
// blocked in the kernel, and Ctrl-C could not end it (the process caught
// the signal and stayed in open). Each now answers at once: a refusal
// where a file is needed, an empty catalogue where one is read. Run as
// processes killed after 20 s, so a regression fails instead of hanging.
func TestFIFOArgumentsDoNotHang(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	a := filepath.Join(dir, "a")
	os.WriteFile(a, []byte("hello\n"), 0o644)
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"sdcard", "resize", fifo, "--size", "100MiB"}, 2, fifo + " is not a regular file; sdcard resize grows an image file"},
		{[]string{"flash", fifo, filepath.Join(dir, "out.img")}, 2, "image " + fifo + " is not a regular file (p---------): flash maps and reads the image file twice"},
		{[]string{"catalogue", "list", "-f", fifo}, 2, "the file is empty"},
		{[]string{"verify", "--catalogue", fifo, a}, 2, "the file is empty"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args[:2], " "), func(t *testing.T) {
			code, stderr := runKilledAfter(t, 20*time.Second, cpsimage(t, tc.args...))
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d (want %d), stderr %q; want %q", code, tc.code, stderr, tc.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "out.img")); err == nil {
		t.Error("flash left an output")
	}
}
