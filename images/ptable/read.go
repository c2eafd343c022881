package ptable

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/diskfs/go-diskfs/partition/mbr"

	"github.com/conpaas/cps/internal/input"
	"github.com/conpaas/cps/plan"
)

// ErrInvalid is wrapped by every error that says the bytes are not a
// partition table we can trust (as opposed to an I/O error).
var ErrInvalid = errors.New("not a valid partition table")

// GPT limits. The UEFI specification fixes the entry size at 128 bytes for
// revision 1.0 headers (it allows larger powers of two, which no tool
// writes and go-diskfs does not read) and every partitioning tool writes
// 128 entries (16 KiB); 1 MiB is 8192 entries, far above any real table,
// and keeps a crafted header from making the reader allocate gigabytes.
const (
	gptEntrySize  = 128
	maxGPTArray   = 1 << 20
	gptHeaderSize = 92
	gptSignature  = "EFI PART"
	maxLBA        = (1<<63 - 1) / Sector
)

// Read reads the partition table of an existing image file or block device.
func Read(f *os.File) (string, []plan.Partition, error) {
	size, err := input.Size(f)
	if err != nil {
		return "", nil, err
	}
	if size < 0 {
		return "", nil, fmt.Errorf("%s: reading a partition table needs a file or block device: %w", f.Name(), input.ErrNotSeekable)
	}
	return ReadAt(f, size, f.Name())
}

// ReadAt reads the partition table of the size-byte disk r and returns its
// kind (GPT or MBR) and partitions with Name (GPT only), FS (from the
// partition type; "" when unknown), Start and End in bytes. A GPT disk is
// recognised by its header first, since its protective MBR is also a valid
// MBR. name is used in messages.
//
// The GPT headers are checked before go-diskfs sees them (its reader
// allocates whatever a header claims), and a panic in either reader is
// turned into an error wrapping ErrInvalid: a partition table is user
// input.
func ReadAt(r io.ReaderAt, size int64, name string) (string, []plan.Partition, error) {
	if err := checkGPTHeaders(r, size); err != nil {
		return "", nil, fmt.Errorf("%s: %w", name, err)
	}
	f := &readerFile{r: r, size: size, name: name}
	t, gerr := readGPT(f)
	if gerr == nil {
		var parts []plan.Partition
		for i, p := range t.Partitions {
			if p == nil || p.Type == gpt.Unused {
				continue
			}
			if p.Start > p.End || p.End >= maxLBA {
				return "", nil, fmt.Errorf("%s: %w: GPT entry %d spans sectors %d to %d", name, ErrInvalid, i+1, p.Start, p.End)
			}
			parts = append(parts, plan.Partition{
				Name:  p.Name,
				FS:    FSOf(GPT, string(p.Type)),
				UUID:  p.GUID,
				Start: int64(p.Start) * Sector,
				End:   (int64(p.End) + 1) * Sector,
			})
		}
		return GPT, parts, nil
	}
	if errors.Is(gerr, ErrInvalid) {
		return "", nil, fmt.Errorf("%s: %w", name, gerr)
	}
	t2, err := readMBR(f)
	if err != nil {
		return "", nil, fmt.Errorf("%s has no readable partition table (neither GPT nor MBR): %w", name, err)
	}
	var parts []plan.Partition
	for _, p := range t2.Partitions {
		if p == nil || p.Type == mbr.Empty || p.Size == 0 {
			continue // libfdisk also treats a zero-size entry as unused
		}
		parts = append(parts, plan.Partition{
			FS:    FSOf(MBR, fmt.Sprintf("%02X", byte(p.Type))),
			Start: int64(p.Start) * Sector,
			End:   (int64(p.Start) + int64(p.Size)) * Sector,
		})
	}
	return MBR, parts, nil
}

// readGPT is gpt.Read with a panic turned into an ErrInvalid error.
func readGPT(f *readerFile) (t *gpt.Table, err error) {
	defer func() {
		if p := recover(); p != nil {
			t, err = nil, fmt.Errorf("%w: the GPT reader failed on it (%v)", ErrInvalid, p)
		}
	}()
	return gpt.Read(f, Sector, Sector)
}

// readMBR is mbr.Read with a panic turned into an ErrInvalid error.
func readMBR(f *readerFile) (t *mbr.Table, err error) {
	defer func() {
		if p := recover(); p != nil {
			t, err = nil, fmt.Errorf("%w: the MBR reader failed on it (%v)", ErrInvalid, p)
		}
	}()
	return mbr.Read(f, Sector, Sector)
}

// checkGPTHeaders rejects a GPT header (primary at LBA 1, backup in the
// last sector) that carries a valid signature and CRC, so go-diskfs would
// act on it, but describes an entry array that is not 128-byte entries,
// is over 1 MiB, or lies outside the disk. Headers without a valid CRC
// are left to go-diskfs, which ignores them.
func checkGPTHeaders(r io.ReaderAt, size int64) error {
	for _, h := range []struct {
		what string
		lba  int64
	}{{"primary", 1}, {"backup", size/Sector - 1}} {
		if h.lba < 1 || (h.what == "backup" && h.lba == 1) {
			continue
		}
		b := make([]byte, Sector)
		if n, _ := r.ReadAt(b, h.lba*Sector); n < gptHeaderSize {
			continue
		}
		if !bytes.Equal(b[:8], []byte(gptSignature)) || binary.LittleEndian.Uint32(b[12:16]) != gptHeaderSize {
			continue
		}
		hdr := append([]byte(nil), b[:gptHeaderSize]...)
		want := binary.LittleEndian.Uint32(hdr[16:20])
		clear(hdr[16:20])
		if crc32.ChecksumIEEE(hdr) != want {
			continue
		}
		entriesLBA := binary.LittleEndian.Uint64(b[72:80])
		count := uint64(binary.LittleEndian.Uint32(b[80:84]))
		esize := uint64(binary.LittleEndian.Uint32(b[84:88]))
		switch {
		case esize != gptEntrySize:
			return fmt.Errorf("%w: the %s GPT header (sector %d) says entries are %d bytes; they must be %d", ErrInvalid, h.what, h.lba, esize, gptEntrySize)
		case count*esize > maxGPTArray:
			return fmt.Errorf("%w: the %s GPT header (sector %d) claims %d partition entries (%d bytes); at most %d bytes are accepted", ErrInvalid, h.what, h.lba, count, count*esize, maxGPTArray)
		case entriesLBA >= uint64(maxLBA) || int64(entriesLBA)*Sector+int64(count*esize) > size:
			return fmt.Errorf("%w: the %s GPT header (sector %d) puts its %d-byte entry array at sector %d, beyond the %d-byte disk", ErrInvalid, h.what, h.lba, count*esize, entriesLBA, size)
		}
	}
	return nil
}

// readerFile gives go-diskfs (which wants an fs.File that can seek) a view
// of a ReaderAt of known size, so tables are read from streams and
// partial copies without a temporary file.
type readerFile struct {
	r    io.ReaderAt
	size int64
	off  int64
	name string
}

func (f *readerFile) ReadAt(p []byte, off int64) (int, error) { return f.r.ReadAt(p, off) }

func (f *readerFile) Read(p []byte) (int, error) {
	n, err := f.r.ReadAt(p, f.off)
	f.off += int64(n)
	return n, err
}

func (f *readerFile) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		off += f.off
	case io.SeekEnd:
		off += f.size
	}
	if off < 0 {
		return 0, fmt.Errorf("seek %s: negative offset", f.name)
	}
	f.off = off
	return off, nil
}

func (f *readerFile) Stat() (fs.FileInfo, error) { return fileInfo{f}, nil }
func (f *readerFile) Close() error               { return nil }

type fileInfo struct{ f *readerFile }

func (i fileInfo) Name() string       { return i.f.name }
func (i fileInfo) Size() int64        { return i.f.size }
func (i fileInfo) Mode() fs.FileMode  { return 0o444 }
func (i fileInfo) ModTime() time.Time { return time.Time{} }
func (i fileInfo) IsDir() bool        { return false }
func (i fileInfo) Sys() any           { return nil }
