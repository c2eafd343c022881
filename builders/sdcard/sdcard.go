// Package sdcard builds Raspberry Pi SD-card images (MBR, FAT32 boot with the
// Pi firmware, ext4 root, swap near the end, every partition on a 4 MiB
// erase-block boundary, exactly 31998345216 bytes by default) and grows
// them offline for bigger cards.
package sdcard

// Defaults from the ConPaaS Raspberry Pi guide.
const (
	// DefaultSize is the size of the published SD-card image, in bytes.
	DefaultSize int64 = 31998345216
	// DefaultAlignment is the SD erase-block size every partition starts on.
	DefaultAlignment int64 = 4 << 20
)
