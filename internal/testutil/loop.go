package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// LoopDevice attaches a fresh sparse file of size bytes (with a marker at
// its start) to a loop device for the test's lifetime and returns the
// device. It skips when loop devices are unavailable here.
func LoopDevice(t testing.TB, size int64) string {
	t.Helper()
	RequireTool(t, "losetup")
	p := filepath.Join(t.TempDir(), "backing.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("cps loop"), 0)
	f.Truncate(size)
	f.Close()
	out, err := exec.Command("losetup", "--find", "--show", p).CombinedOutput()
	if err != nil {
		t.Skipf("no loop device available (%v: %s)", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev
}
