package fs

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
)

// Superblock fields (ext4 on-disk layout).
const (
	sbOffset         = 1024
	sbSize           = 1024
	sbBlocksLo       = 0x04
	sbFirstDataBlock = 0x14
	sbLogBlockSize   = 0x18
	sbBlocksPerGroup = 0x20
	sbMagic          = 0x38
	sbROCompat       = 0x64
	sbBlocksHi       = 0x150
	sbKBytesWritten  = 0x178
	sbChecksum       = 0x3FC

	roCompatSparseSuper  = 0x1
	roCompatMetadataCsum = 0x400
)

// zeroKBytesWritten clears s_kbytes_written in the superblock and its
// backups, fixing their checksums. libext2fs adds up what it wrote there,
// and how much mke2fs and debugfs write depends on the order they read the
// tree in (readdir order of the build directory), so it would be the one
// field that differs between two builds of the same tree.
func zeroKBytesWritten(f *os.File, off int64) error {
	sb := make([]byte, sbSize)
	if _, err := f.ReadAt(sb, off+sbOffset); err != nil {
		return fmt.Errorf("read superblock: %w", err)
	}
	if binary.LittleEndian.Uint16(sb[sbMagic:]) != 0xEF53 {
		return fmt.Errorf("no ext4 superblock at %d", off+sbOffset)
	}
	bs := int64(1024) << binary.LittleEndian.Uint32(sb[sbLogBlockSize:])
	bpg := int64(binary.LittleEndian.Uint32(sb[sbBlocksPerGroup:]))
	first := int64(binary.LittleEndian.Uint32(sb[sbFirstDataBlock:]))
	blocks := int64(binary.LittleEndian.Uint32(sb[sbBlocksLo:])) | int64(binary.LittleEndian.Uint32(sb[sbBlocksHi:]))<<32
	groups := (blocks - first + bpg - 1) / bpg
	sparse := binary.LittleEndian.Uint32(sb[sbROCompat:])&roCompatSparseSuper != 0
	csum := binary.LittleEndian.Uint32(sb[sbROCompat:])&roCompatMetadataCsum != 0

	places := []int64{off + sbOffset}
	for g := int64(1); g < groups; g++ {
		if sparse && !backupGroup(g) {
			continue
		}
		// The backup is the first block of its group.
		places = append(places, off+(first+g*bpg)*bs)
	}
	tab := crc32.MakeTable(crc32.Castagnoli)
	for _, at := range places {
		if _, err := f.ReadAt(sb, at); err != nil {
			return fmt.Errorf("read superblock copy at %d: %w", at, err)
		}
		if binary.LittleEndian.Uint16(sb[sbMagic:]) != 0xEF53 {
			continue // not a backup after all (e.g. sparse_super2)
		}
		binary.LittleEndian.PutUint64(sb[sbKBytesWritten:], 0)
		if csum {
			// ext2fs_superblock_csum: crc32c seeded with ~0, not inverted.
			binary.LittleEndian.PutUint32(sb[sbChecksum:], ^crc32.Checksum(sb[:sbChecksum], tab))
		}
		if _, err := f.WriteAt(sb, at); err != nil {
			return fmt.Errorf("write superblock copy at %d: %w", at, err)
		}
	}
	return nil
}

// backupGroup reports whether group g holds a superblock backup with
// sparse_super: groups 1 and powers of 3, 5 and 7.
func backupGroup(g int64) bool {
	if g <= 1 {
		return true
	}
	for _, b := range []int64{3, 5, 7} {
		n := b
		for n < g {
			n *= b
		}
		if n == g {
			return true
		}
	}
	return false
}
