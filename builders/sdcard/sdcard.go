// Package sdcard builds Raspberry Pi SD-card images (MBR, FAT32 boot with the
// Pi firmware, ext4 root, swap near the end, every partition on a 4 MiB
// erase-block boundary, exactly plan.SDCardSize bytes by default) and grows
// them offline for bigger cards.
package sdcard

// DefaultAlignment is the SD erase-block size every partition starts on
// (the ConPaaS Raspberry Pi guide); the default size is plan.SDCardSize.
const DefaultAlignment int64 = 4 << 20
