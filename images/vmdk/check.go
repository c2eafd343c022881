package vmdk

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Info is what Check learned about a streamOptimized VMDK.
type Info struct {
	Capacity int64 // virtual disk size in bytes
	Grains   int   // data grains stored
}

// ErrNotVMDK is wrapped when the bytes do not start with a VMDK header.
var ErrNotVMDK = errors.New("not a VMDK")

// maxProblems keeps a report readable however damaged the disk.
const maxProblems = 20

// Check reads a streamOptimized VMDK (the format OVAs carry) of size bytes
// from r in one pass, as an OVA member or a file, and checks it the way a
// reader depends on it (VMware Virtual Disk Format 1.1, "stream-optimized
// compressed sparse extent"): the header's magic, version, grain size and
// flags; then every marker: each grain at a grain-aligned sector inside
// the capacity, inflating to at most one grain; the grain tables; the
// grain directory; the footer, whose directory offset must be the one
// written; the end-of-stream marker; and that the directory and tables
// point at exactly the grains stored, each at its own LBA. It returns one
// line per problem (nil: sound), and an error only when r fails.
func Check(r io.Reader, size int64) (*Info, []string, error) {
	c := &checker{r: bufio.NewReaderSize(r, 64<<10), size: size, grainAt: map[uint64]uint64{}, gtAt: map[uint64][]uint32{}}
	info, err := c.run()
	if len(c.problems) > maxProblems {
		c.problems = append(c.problems[:maxProblems], fmt.Sprintf("... and %d more problems", len(c.problems)-maxProblems))
	}
	return info, c.problems, err
}

type checker struct {
	r        *bufio.Reader
	size     int64
	pos      int64 // bytes consumed
	problems []string
	hdr      header
	grainAt  map[uint64]uint64   // sector of a grain marker -> its LBA
	gtAt     map[uint64][]uint32 // sector of a grain table's data -> entries
	gd       []uint32
	gdSector uint64
}

func (c *checker) add(format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
}

// read fills b from the stream; a short stream is a problem (truncated),
// reported as io.ErrUnexpectedEOF.
func (c *checker) read(b []byte) error {
	n, err := io.ReadFull(c.r, b)
	c.pos += int64(n)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		c.add("truncated at byte %d: the disk ends before its end-of-stream marker", c.pos)
		return io.ErrUnexpectedEOF
	}
	return err
}

func (c *checker) skip(n int64) error {
	m, err := io.CopyN(io.Discard, c.r, n)
	c.pos += m
	if errors.Is(err, io.EOF) {
		c.add("truncated at byte %d: the disk ends before its end-of-stream marker", c.pos)
		return io.ErrUnexpectedEOF
	}
	return err
}

// ioErr hides the truncation signal (already a problem) from the caller.
func ioErr(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return nil
	}
	return err
}

func parseHeader(b []byte) header {
	var h header
	binary.Read(bytes.NewReader(b), binary.LittleEndian, &h)
	return h
}

func (c *checker) run() (*Info, error) {
	b := make([]byte, sector)
	if err := c.read(b); err != nil {
		c.problems = []string{fmt.Sprintf("%v: %d bytes, shorter than a VMDK header", ErrNotVMDK, c.pos)}
		return nil, ioErr(err)
	}
	c.hdr = parseHeader(b)
	h := c.hdr
	if h.Magic != 0x564d444b {
		c.add("%v: no KDMV magic at byte 0 (a raw image, or another format)", ErrNotVMDK)
		return nil, nil
	}
	info := &Info{Capacity: int64(min(h.Capacity, 1<<54)) * sector}
	switch {
	case h.Version < 1 || h.Version > 3:
		c.add("header: version %d (1, 2 or 3 expected)", h.Version)
	case h.GrainSize < 8 || h.GrainSize > 2048 || h.GrainSize&(h.GrainSize-1) != 0:
		c.add("header: grain size %d sectors (a power of two from 8 to 2048 expected)", h.GrainSize)
	case h.NumGTEsPerGT != gtEntries:
		c.add("header: %d entries per grain table (%d expected)", h.NumGTEsPerGT, gtEntries)
	case h.Capacity == 0 || h.Capacity > 1<<54:
		c.add("header: capacity %d sectors", h.Capacity)
	case h.Flags&(1<<16) == 0 || h.Flags&(1<<17) == 0 || h.CompressAlgorithm != 1:
		c.add("header: flags %#x, compression %d: not a streamOptimized VMDK (compressed grains with markers), which is what OVF packages carry", h.Flags, h.CompressAlgorithm)
	case h.OverHead < 1 || int64(h.OverHead) > c.size/sector:
		c.add("header: overhead of %d sectors does not fit the %d-byte disk", h.OverHead, c.size)
	case h.DescriptorOffset != 0 && h.DescriptorOffset+h.DescriptorSize > h.OverHead:
		c.add("header: descriptor at sectors %d+%d overlaps the grains (overhead %d)", h.DescriptorOffset, h.DescriptorSize, h.OverHead)
	}
	if len(c.problems) > 0 {
		return info, nil
	}
	if err := c.overhead(); err != nil || len(c.problems) > 0 {
		return info, ioErr(err)
	}
	if err := c.markers(info); err != nil || len(c.problems) > 0 {
		return info, ioErr(err) // the tables cannot be trusted either
	}
	c.crossCheck()
	return info, nil
}

// maxOverhead bounds the metadata read into memory: the directory and
// tables of a 2 TiB disk take 16 MiB.
const maxOverhead = 64 << 20

// overhead reads the sectors before the first grain. A writer that knows
// the layout in advance (qemu-img) puts the grain directory and tables
// there and names the directory in the header; one that streams (ours,
// VMware's) writes them after the grains and says GD_AT_END.
func (c *checker) overhead() error {
	h := c.hdr
	n := int64(h.OverHead)*sector - sector
	if h.GDOffset == gdAtEnd {
		return c.skip(n)
	}
	if n > maxOverhead {
		c.add("header: overhead of %d sectors is more than the %d bytes of metadata accepted", h.OverHead, maxOverhead)
		return nil
	}
	meta := make([]byte, h.OverHead*sector)
	if err := c.read(meta[sector:]); err != nil {
		return err
	}
	grains := (h.Capacity + h.GrainSize - 1) / h.GrainSize
	gdEntries := (grains + gtEntries - 1) / gtEntries
	if h.GDOffset == 0 || h.GDOffset+(gdEntries*4+sector-1)/sector > h.OverHead {
		c.add("header: a grain directory of %d entries at sector %d is not inside the %d sectors of overhead", gdEntries, h.GDOffset, h.OverHead)
		return nil
	}
	c.gd, c.gdSector = u32s(meta[h.GDOffset*sector:][:gdEntries*4]), h.GDOffset
	for i, gt := range c.gd {
		if gt == 0 {
			continue
		}
		if uint64(gt)+gtEntries*4/sector > h.OverHead {
			c.add("grain directory entry %d points at sector %d, outside the overhead", i, gt)
			continue
		}
		c.gtAt[uint64(gt)] = u32s(meta[uint64(gt)*sector:][:gtEntries*4])
	}
	return nil
}

// markers walks the markers up to the end-of-stream marker.
func (c *checker) markers(info *Info) error {
	h := c.hdr
	grainBytes := int64(h.GrainSize) * sector
	m := make([]byte, sector)
	raw := make([]byte, grainBytes+1)
	footer := false
	for {
		if len(c.problems) > maxProblems {
			return nil
		}
		at := uint64(c.pos / sector)
		if err := c.read(m[:12]); err != nil {
			return err
		}
		val := binary.LittleEndian.Uint64(m[0:])
		n := int64(binary.LittleEndian.Uint32(m[8:]))
		if n > 0 { // a grain: LBA, compressed size, data
			if n > grainBytes+grainBytes/8+1024 {
				c.add("grain marker at sector %d: %d bytes of compressed data, more than a %d-byte grain can take", at, n, grainBytes)
				return nil
			}
			if c.pos+n > c.size {
				c.add("truncated: the grain at sector %d needs %d bytes, the disk ends at byte %d", at, n, c.size)
				return nil
			}
			switch {
			case val >= h.Capacity:
				c.add("grain marker at sector %d: LBA %d is past the capacity (%d sectors)", at, val, h.Capacity)
			case val%h.GrainSize != 0:
				c.add("grain marker at sector %d: LBA %d is not on a grain boundary", at, val)
			}
			data := make([]byte, n)
			if err := c.read(data); err != nil {
				return err
			}
			zr, err := zlib.NewReader(bytes.NewReader(data))
			if err == nil {
				var got int
				got, err = io.ReadFull(zr, raw)
				if err == io.ErrUnexpectedEOF || err == io.EOF {
					err = nil
				}
				if err == nil && int64(got) > grainBytes {
					err = fmt.Errorf("inflates to more than %d bytes", grainBytes)
				}
			}
			if err != nil {
				c.add("grain at LBA %d (sector %d): compressed data is corrupt (%v)", val, at, err)
			}
			c.grainAt[at] = val
			info.Grains++
			if err := c.skip(padding(12 + n)); err != nil {
				return err
			}
			continue
		}
		// Metadata: sectors count, zero size, type; the marker fills its sector.
		if err := c.read(m[12:]); err != nil {
			return err
		}
		typ := binary.LittleEndian.Uint32(m[12:])
		if val > uint64(c.size-c.pos)/sector {
			c.add("marker at sector %d: %d sectors of metadata, more than the disk holds", at, val)
			return nil
		}
		data := make([]byte, val*sector)
		if err := c.read(data); err != nil {
			return err
		}
		switch typ {
		case markerEOS:
			if !footer && h.GDOffset == gdAtEnd {
				c.add("end-of-stream marker at sector %d without a footer before it", at)
			}
			return nil
		case markerGT:
			if len(data) != gtEntries*4 {
				c.add("grain table at sector %d: %d bytes (%d expected)", at+1, len(data), gtEntries*4)
				continue
			}
			c.gtAt[at+1] = u32s(data)
		case markerGD:
			if c.gd != nil {
				c.add("a second grain directory at sector %d", at+1)
				continue
			}
			c.gd, c.gdSector = u32s(data), at+1
		case markerFooter:
			if val != 1 {
				c.add("footer marker at sector %d: %d sectors (1 expected)", at, val)
				continue
			}
			f := parseHeader(data)
			footer = true
			switch {
			case f.Magic != h.Magic || f.Capacity != h.Capacity || f.GrainSize != h.GrainSize:
				c.add("footer at sector %d does not repeat the header (magic, capacity, grain size)", at+1)
			case c.gd == nil || f.GDOffset != c.gdSector:
				c.add("footer says the grain directory is at sector %d, it is at %d", f.GDOffset, c.gdSector)
			}
		default:
			c.add("unknown marker type %d at sector %d", typ, at)
			return nil
		}
	}
}

// crossCheck: the directory covers the capacity, every table it names
// exists, every table entry names a stored grain at that entry's LBA,
// and no stored grain is left out.
func (c *checker) crossCheck() {
	h := c.hdr
	if c.gd == nil {
		c.add("no grain directory")
		return
	}
	grains := (h.Capacity + h.GrainSize - 1) / h.GrainSize
	if need := (grains + gtEntries - 1) / gtEntries; uint64(len(c.gd)) < need {
		c.add("grain directory has %d entries, the capacity needs %d", len(c.gd), need)
	}
	used := map[uint64]bool{}
	for i, gt := range c.gd {
		if gt == 0 {
			continue
		}
		entries, ok := c.gtAt[uint64(gt)]
		if !ok {
			c.add("grain directory entry %d points at sector %d, where no grain table is", i, gt)
			continue
		}
		for j, g := range entries {
			if g == 0 {
				continue
			}
			want := (uint64(i)*gtEntries + uint64(j)) * h.GrainSize
			lba, ok := c.grainAt[uint64(g)]
			switch {
			case !ok:
				c.add("grain table %d entry %d points at sector %d, where no grain is", i, j, g)
			case lba != want:
				c.add("grain table %d entry %d points at the grain of LBA %d, not %d", i, j, lba, want)
			}
			used[uint64(g)] = true
		}
	}
	n := 0
	for g := range c.grainAt {
		if !used[g] {
			n++
		}
	}
	if n > 0 {
		c.add("%d stored grains are in no grain table (their data would read as zeros)", n)
	}
}

func u32s(b []byte) []uint32 {
	out := make([]uint32, len(b)/4)
	for i := range out {
		out[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return out
}

// padding is how many bytes follow n to the next sector boundary.
func padding(n int64) int64 { return (sector - n%sector) % sector }
