package testutil

import (
	"encoding/binary"
	"hash/crc32"
)

// CraftedGPT returns a size-byte disk with a protective MBR and a primary
// GPT header at LBA 1 whose header CRC is valid but whose entry array is
// what the caller says: count entries of esize bytes at LBA 2, with the
// array CRC computed over what follows in the disk (so a sane header with
// an empty array reads as a table without partitions). It is how tests
// reach the partition-table readers with headers like the ones that
// crashed go-diskfs (count 2147483647 × size 4294967295), generated here
// rather than committed as blobs.
func CraftedGPT(size int64, count, esize uint32) []byte {
	b := make([]byte, size)
	// Protective MBR: one 0xEE partition over the disk.
	pe := b[446:]
	pe[4] = 0xee
	binary.LittleEndian.PutUint32(pe[8:], 1)
	binary.LittleEndian.PutUint32(pe[12:], uint32(min(size/512-1, 1<<32-1)))
	b[510], b[511] = 0x55, 0xaa
	h := b[512:]
	copy(h, "EFI PART")
	binary.LittleEndian.PutUint32(h[8:], 0x00010000) // revision 1.0
	binary.LittleEndian.PutUint32(h[12:], 92)
	binary.LittleEndian.PutUint64(h[24:], 1)                   // my LBA
	binary.LittleEndian.PutUint64(h[32:], uint64(size/512-1))  // alternate LBA
	binary.LittleEndian.PutUint64(h[40:], 34)                  // first usable
	binary.LittleEndian.PutUint64(h[48:], uint64(size/512-34)) // last usable
	copy(h[56:72], "cps-crafted-disk")                         // disk GUID
	binary.LittleEndian.PutUint64(h[72:], 2)                   // entries LBA
	binary.LittleEndian.PutUint32(h[80:], count)
	binary.LittleEndian.PutUint32(h[84:], esize)
	if n := int64(count) * int64(esize); n <= size-1024 {
		binary.LittleEndian.PutUint32(h[88:], crc32.ChecksumIEEE(b[1024:1024+n]))
	}
	binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:92]))
	return b
}
