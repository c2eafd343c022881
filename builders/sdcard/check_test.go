package sdcard

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/conpaas/cps/images/sparse"
	"github.com/conpaas/cps/internal/testutil"
)

// sfdiskTable is what `sfdisk --json` prints.
type sfdiskTable struct {
	PartitionTable struct {
		Label      string `json:"label"`
		ID         string `json:"id"`
		Unit       string `json:"unit"`
		Partitions []struct {
			Node  string `json:"node"`
			Start int64  `json:"start"`
			Size  int64  `json:"size"`
			Type  string `json:"type"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

type realPart struct {
	start, size int64 // bytes
	typ         string
}

// checkImage runs the real tools on an SD image: size, sfdisk --json
// (MBR, starts on 4 MiB), fsck.vfat -n on the boot partition, e2fsck -fn on
// the root, blkid on the swap, and du vs ls for sparseness. It returns the
// partitions as sfdisk sees them.
func checkImage(t *testing.T, path string, size int64) []realPart {
	t.Helper()
	for _, tool := range []string{"sfdisk", "fsck.vfat", "e2fsck", "blkid"} {
		testutil.RequireTool(t, tool)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != size {
		t.Fatalf("image is %d bytes, want exactly %d", fi.Size(), size)
	}
	out, err := exec.Command("sfdisk", "--json", path).Output()
	if err != nil {
		t.Fatalf("sfdisk --json: %v", err)
	}
	var tab sfdiskTable
	if err := json.Unmarshal(out, &tab); err != nil {
		t.Fatalf("sfdisk --json: %v\n%s", err, out)
	}
	if tab.PartitionTable.Label != "dos" {
		t.Fatalf("partition table %q, want dos (MBR)", tab.PartitionTable.Label)
	}
	var parts []realPart
	for _, p := range tab.PartitionTable.Partitions {
		if p.Start*512%4194304 != 0 {
			t.Errorf("%s starts at sector %d: %d %% 4194304 != 0", p.Node, p.Start, p.Start*512)
		}
		if end := (p.Start + p.Size) * 512; end > size {
			t.Errorf("%s ends at %d, past the image end %d", p.Node, end, size)
		}
		parts = append(parts, realPart{p.Start * 512, p.Size * 512, p.Type})
	}
	if len(parts) != 3 || parts[0].typ != "c" || parts[1].typ != "83" || parts[2].typ != "82" {
		t.Fatalf("partitions %+v, want FAT32 LBA (c), Linux (83), swap (82)", parts)
	}
	for i := 1; i < len(parts); i++ {
		if parts[i].start < parts[i-1].start+parts[i-1].size {
			t.Fatalf("partitions %d and %d overlap", i, i+1)
		}
	}
	// Swap near the end: nothing after it but less than one erase block.
	if tail := size - (parts[2].start + parts[2].size); tail >= 4194304 {
		t.Errorf("%d bytes after the swap partition; it should end within 4 MiB of the end", tail)
	}

	// fsck.vfat takes no offset: check a copy of the (small) partition.
	boot := filepath.Join(t.TempDir(), "boot.vfat")
	extract(t, path, boot, parts[0].start, parts[0].size)
	if out, err := exec.Command("fsck.vfat", "-n", boot).CombinedOutput(); err != nil {
		t.Fatalf("fsck.vfat -n: %v\n%s", err, out)
	}
	// e2fsprogs opens a filesystem inside an image with "?offset=".
	if err := E2fsck(t.Context(), fmt.Sprintf("%s?offset=%d", path, parts[1].start)); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command("blkid", "-p", "-O", strconv.FormatInt(parts[2].start, 10), "-o", "export", path).Output()
	if err != nil || !strings.Contains(string(out), "TYPE=swap") {
		t.Fatalf("blkid on the swap partition: %v\n%s", err, out)
	}
	// du vs ls: the file occupies its data only.
	f, _ := os.Open(path)
	ext, _ := sparse.DataExtents(f)
	f.Close()
	alloc := blocks(t, path)
	if alloc > size/20 {
		t.Errorf("image allocates %d bytes of %d: not sparse", alloc, size)
	}
	t.Logf("%s: ls -l %d bytes, du %d bytes, %d data extents (%d bytes)", filepath.Base(path), size, alloc, len(ext), sparse.DataBytes(ext))
	return parts
}

func blocks(t *testing.T, path string) int64 {
	out, err := exec.Command("du", "-B1", path).Output()
	if err != nil {
		t.Fatalf("du: %v", err)
	}
	n, err := strconv.ParseInt(strings.Fields(string(out))[0], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func extract(t *testing.T, src, dst string, off, n int64) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, io.NewSectionReader(in, off, n)); err != nil {
		t.Fatal(err)
	}
}

// debugfsCat reads a file from the ext4 root of an image.
func debugfsCat(t *testing.T, img string, off int64, path string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "cat "+path, fmt.Sprintf("%s?offset=%d", img, off)).Output()
	if err != nil {
		t.Fatalf("debugfs cat %s: %v", path, err)
	}
	return string(bytes.TrimSpace(out))
}

// mtype reads a file from the FAT boot partition of an image, copied out
// once per image and offset (mtools then checks the FAT's size against the
// file's, which it cannot do at an offset inside a 32 GB image).
func mtype(t *testing.T, img string, off int64, path string) string {
	t.Helper()
	testutil.RequireTool(t, "mtype")
	key := fmt.Sprintf("%s@%d", img, off)
	part, ok := bootCopies[key]
	if !ok {
		part = filepath.Join(t.TempDir(), "boot.vfat")
		extract(t, img, part, off, 512<<20)
		bootCopies[key] = part
	}
	cmd := exec.Command("mtype", "-i", part, "::"+path)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		ls, _ := exec.Command("mdir", "-i", part, "::/").CombinedOutput()
		t.Fatalf("mtype %s: %v: %s\n%s", path, err, stderr.String(), ls)
	}
	return string(out)
}

var bootCopies = map[string]string{}
