package fs

import (
	"context"
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// MakeFAT32 makes a FAT32 filesystem of size bytes in dst at off, written
// in place, and copies the tree srcDir into it ("" for an empty filesystem).
// volID is the volume serial number (the UUID Linux shows as XXXX-XXXX);
// with epoch > 0 mtimes in srcDir newer than epoch are clamped to it (in
// place) and what the tools create is stamped with it, so two builds are
// byte-identical.
//
// The filesystem is formatted by dosfstools' mkfs.fat and filled by mtools'
// mcopy, both working on the image file at an offset. go-diskfs v1.9's FAT32
// is not used: for some sizes (64 MiB, the usual ESP) fat32.Create sizes the
// FAT two entries short of the cluster count, and its writer leaves wrong
// '..' entries and a stale free-cluster count, all of which fsck.fat
// rejects.
func MakeFAT32(ctx context.Context, dst *os.File, off, size int64, srcDir, label string, volID uint32, epoch int64) error {
	if len(label) > 11 {
		return fmt.Errorf("FAT label %q is longer than 11 characters", label)
	}
	if off%512 != 0 || size%1024 != 0 {
		return fmt.Errorf("FAT32 at %d+%d: offset must be a multiple of 512 and size of 1024", off, size)
	}
	if label == "" {
		label = "NO NAME"
	}
	// mkfs.fat picks the cluster size from the size of the whole file, not
	// of the partition, so a 64 MiB ESP in a 2 GiB image would get 4 KiB
	// clusters, too few for FAT32. Pick it from the partition, by the
	// Microsoft table mkfs.fat itself uses.
	spc := 1
	switch {
	case size > 32<<30:
		spc = 64
	case size > 16<<30:
		spc = 32
	case size > 8<<30:
		spc = 16
	case size > 260<<20:
		spc = 8
	}
	if clusters := size / int64(512*spc); clusters < 65525+100 {
		return fmt.Errorf("a FAT32 filesystem needs at least 65525 clusters; %d bytes give %d, make the partition at least 34MiB", size, clusters)
	}
	env := os.Environ()
	args := []string{"-F", "32", "-S", "512", "-s", strconv.Itoa(spc), "-n", label, "-i", fmt.Sprintf("%08x", volID),
		"--offset", strconv.FormatInt(off/512, 10), "-h", strconv.FormatInt(off/512, 10)}
	if epoch > 0 {
		// mkfs.fat 4.2 ignores SOURCE_DATE_EPOCH and stamps the volume
		// label entry with the clock; --invariant pins it (our -i still
		// sets the serial). mcopy does honour SOURCE_DATE_EPOCH.
		args = append(args, "--invariant")
		env = append(env, "SOURCE_DATE_EPOCH="+strconv.FormatInt(epoch, 10))
	}
	// mkfs.fat opens the path itself; writes through dst's descriptor and
	// through the path reach the same file.
	args = append(args, dst.Name(), strconv.FormatInt(size/1024, 10))
	err := run(ctx, env, "mkfs.fat", args...)
	if err != nil {
		return fmt.Errorf("FAT32 of %d bytes at %d in %s: %w", size, off, dst.Name(), err)
	}
	// --invariant also pins the serial to 1234-ABCD whatever -i says; put
	// ours in the boot sector and its backup (sector 6), at 0x43 of the
	// FAT32 BPB.
	var id [4]byte
	binary.LittleEndian.PutUint32(id[:], volID)
	for _, sec := range []int64{0, 6} {
		if _, err := dst.WriteAt(id[:], off+sec*512+0x43); err != nil {
			return fmt.Errorf("FAT32: write the volume serial: %w", err)
		}
	}
	if srcDir == "" {
		return nil
	}
	entries, err := os.ReadDir(srcDir)
	if err != nil {
		return fmt.Errorf("FAT32: %w", err)
	}
	if len(entries) == 0 {
		return nil
	}
	// -s recursive, -p keep attributes, -m keep mtimes, -Q stop at the
	// first error; mtools stamps what it creates with SOURCE_DATE_EPOCH.
	args = []string{"-i", fmt.Sprintf("%s@@%d", dst.Name(), off), "-s", "-p", "-m", "-Q"}
	for _, e := range entries {
		args = append(args, filepath.Join(srcDir, e.Name()))
	}
	args = append(args, "::/")
	env = append(env, "MTOOLS_SKIP_CHECK=1")
	if epoch > 0 {
		if err := clampTimes(srcDir, epoch); err != nil {
			return fmt.Errorf("FAT32: %w", err)
		}
	}
	if err := run(ctx, env, "mcopy", args...); err != nil {
		return fmt.Errorf("FAT32: copy %s into %s: %w", srcDir, dst.Name(), err)
	}
	return nil
}

// clampTimes sets the mtime of every file under dir newer than epoch to
// epoch, since mcopy -m copies them into the FAT entries.
func clampTimes(dir string, epoch int64) error {
	t := time.Unix(epoch, 0)
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.ModTime().After(t) {
			return os.Chtimes(p, t, t)
		}
		return nil
	})
}
