package fs

import (
	"encoding/binary"
	"fmt"
	"os"

	"github.com/google/uuid"
)

// swapPage is the page size the swap header is written for; x86_64 and
// arm64 Debian kernels both use 4 KiB pages.
const swapPage = 4096

// MakeSwap writes a Linux swap header (version 1, "SWAPSPACE2", what mkswap
// writes) for a swap area of size bytes at off in dst. The rest of the area
// stays a hole.
func MakeSwap(dst *os.File, off, size int64, label, id string) error {
	if size < 10*swapPage {
		return fmt.Errorf("swap area of %d bytes is too small; give it at least %d bytes", size, 10*swapPage)
	}
	if len(label) > 16 {
		return fmt.Errorf("swap label %q is longer than 16 bytes", label)
	}
	u, err := uuid.Parse(id)
	if err != nil {
		return fmt.Errorf("swap uuid %q: %w", id, err)
	}
	page := make([]byte, swapPage)
	// struct swap_header_v1_2 starts after 1024 bytes of boot-block space.
	h := page[1024:]
	binary.LittleEndian.PutUint32(h[0:], 1)                       // version
	binary.LittleEndian.PutUint32(h[4:], uint32(size/swapPage-1)) // last_page
	binary.LittleEndian.PutUint32(h[8:], 0)                       // nr_badpages
	copy(h[12:28], u[:])                                          // sws_uuid
	copy(h[28:44], label)                                         // sws_volume
	copy(page[swapPage-10:], "SWAPSPACE2")
	if _, err := dst.WriteAt(page, off); err != nil {
		return fmt.Errorf("write swap header into %s: %w", dst.Name(), err)
	}
	return nil
}
