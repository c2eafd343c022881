package vmdk

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/conpaas/cps/internal/testutil"
)

// smallVMDK converts a 4 MiB raw disk with a little data into a
// streamOptimized VMDK with Write.
func smallVMDK(t testing.TB) []byte {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src.img")
	f, _ := os.Create(src)
	f.Truncate(4 << 20)
	f.WriteAt([]byte("boot sector"), 0)
	f.WriteAt(bytes.Repeat([]byte("data"), 5000), 3<<20)
	f.Close()
	in, _ := os.Open(src)
	defer in.Close()
	var out bytes.Buffer
	if _, err := Write(context.Background(), &out, in, Options{}); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func check(b []byte) (*Info, []string) {
	info, problems, err := Check(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		panic(err) // a bytes.Reader does not fail
	}
	return info, problems
}

func TestCheck(t *testing.T) {
	good := smallVMDK(t)
	info, problems := check(good)
	if len(problems) != 0 || info.Capacity != 4<<20 || info.Grains != 2 {
		t.Fatalf("sound VMDK: %+v %q", info, problems)
	}
	// Issue 15: random bytes as the VMDK passed verify --structure.
	random := make([]byte, len(good))
	rand.New(rand.NewSource(15)).Read(random)
	withMagic := append([]byte("KDMV"), random[4:]...)
	grainAt := int64(overhead*sector + 12) // the first grain's data
	corrupt := append([]byte(nil), good...)
	corrupt[grainAt+5] ^= 0xff
	lba := append([]byte(nil), good...)
	binary.LittleEndian.PutUint64(lba[overhead*sector:], 1<<40)
	footerless := good[:len(good)-3*sector]
	gdMoved := append([]byte(nil), good...)
	binary.LittleEndian.PutUint64(gdMoved[len(good)-2*sector+56:], 7) // footer's gdOffset
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"random bytes", random, "not a VMDK"},
		{"random bytes after a magic", withMagic, "header"},
		{"raw disk", make([]byte, 64<<10), "not a VMDK"},
		{"corrupt grain", corrupt, "compressed data is corrupt"},
		{"grain past the capacity", lba, "past the capacity"},
		{"truncated", good[:overhead*sector+100], "truncated"},
		{"no footer", footerless, "truncated"},
		{"footer points elsewhere", gdMoved, "grain directory is at sector 7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, problems := check(tc.b)
			if !strings.Contains(strings.Join(problems, "\n"), tc.want) {
				t.Errorf("problems %q, want one containing %q", problems, tc.want)
			}
		})
	}
}

// A streamOptimized VMDK written by qemu-img, which we did not write,
// passes the check.
func TestCheckQemuImg(t *testing.T) {
	testutil.RequireTool(t, "qemu-img")
	dir := t.TempDir()
	src := sourceImage(t, 200<<20)
	out := filepath.Join(dir, "q.vmdk")
	if b, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", src, out).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, b)
	}
	b, _ := os.ReadFile(out)
	info, problems := check(b)
	if len(problems) != 0 || info.Capacity != 200<<20 || info.Grains == 0 {
		t.Fatalf("qemu-img's VMDK: %+v %q", info, problems)
	}
}

// FuzzCheck is the VMDK reader's fuzz target: any bytes give a report,
// never a panic or a read past the end.
func FuzzCheck(f *testing.F) {
	f.Add(smallVMDK(f))
	f.Add([]byte("KDMV"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		info, problems := check(b)
		if info == nil && len(problems) == 0 {
			t.Fatal("no info and no problem")
		}
	})
}
