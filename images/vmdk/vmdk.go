// Package vmdk writes streamOptimized VMDK disks, the format OVAs carry
// (VirtualBox, VMware, OpenStack import): a sparse extent of deflated
// 64 KiB grains, each behind a marker, followed by the grain tables, the
// grain directory and a footer, so the file can be written in one pass.
//
// Only the data extents of the source are read (SEEK_DATA/SEEK_HOLE) and
// all-zero grains are left out, so a 32 GB image with 1 GB of data costs
// 1 GB of reading and compressing.
package vmdk

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"

	"github.com/conpaas/cps/images/sparse"
	"github.com/conpaas/cps/internal/input"
)

const (
	sector       = 512
	grainSectors = 128 // 64 KiB grains
	grainSize    = grainSectors * sector
	gtEntries    = 512 // grain-table entries: one table covers 32 MiB
	descSectors  = 20
	overhead     = 128 // sectors before the first grain
	gdAtEnd      = ^uint64(0)

	markerEOS    = 0
	markerGT     = 1
	markerGD     = 2
	markerFooter = 3

	// flags: valid newline test (bit 0), compressed grains (16), markers (17)
	flags = 1 | 1<<16 | 1<<17
)

// header is the 512-byte SparseExtentHeader (VMware Virtual Disk Format 1.1).
type header struct {
	Magic              uint32
	Version            uint32
	Flags              uint32
	Capacity           uint64
	GrainSize          uint64
	DescriptorOffset   uint64
	DescriptorSize     uint64
	NumGTEsPerGT       uint32
	RGDOffset          uint64
	GDOffset           uint64
	OverHead           uint64
	UncleanShutdown    uint8
	SingleEndLineChar  uint8
	NonEndLineChar     uint8
	DoubleEndLineChar1 uint8
	DoubleEndLineChar2 uint8
	CompressAlgorithm  uint16
	Pad                [433]uint8
}

func newHeader(capacity, gdOffset uint64) header {
	return header{
		Magic: 0x564d444b, Version: 3, Flags: flags, Capacity: capacity, GrainSize: grainSectors,
		DescriptorOffset: 1, DescriptorSize: descSectors, NumGTEsPerGT: gtEntries, GDOffset: gdOffset,
		OverHead: overhead, SingleEndLineChar: '\n', NonEndLineChar: ' ', DoubleEndLineChar1: '\r',
		DoubleEndLineChar2: '\n', CompressAlgorithm: 1,
	}
}

// ErrNotDisk is wrapped when the source cannot be a raw disk image.
var ErrNotDisk = errors.New("not a raw disk image")

// Options of Write.
type Options struct {
	// AdapterType is the descriptor's ddb.adapterType: "ide" (default) or
	// "lsilogic"; VirtualBox ignores it for SATA.
	AdapterType string
	// Progress receives the source bytes consumed (data and holes).
	Progress interface{ Add64(int64) }
}

// Stats says what a conversion did.
type Stats struct {
	Capacity   int64 // virtual disk size in bytes
	DataGrains int64 // grains written (non-zero 64 KiB blocks)
	Written    int64 // bytes of VMDK written
}

// Write converts the raw disk image src into a streamOptimized VMDK on w.
func Write(ctx context.Context, w io.Writer, src *os.File, opt Options) (*Stats, error) {
	size, err := input.Size(src)
	if err != nil {
		return nil, err
	}
	if size < 0 {
		return nil, fmt.Errorf("%s is a pipe or character device; converting needs a file or block device: %w", src.Name(), input.ErrNotSeekable)
	}
	if size%sector != 0 {
		return nil, fmt.Errorf("%s is %d bytes, not a whole number of 512-byte sectors: %w", src.Name(), size, ErrNotDisk)
	}
	capacity := uint64(size / sector)
	ext, err := sparse.DataExtents(src)
	if err != nil {
		return nil, err
	}
	cw := &countWriter{w: w}
	if opt.AdapterType == "" {
		opt.AdapterType = "ide"
	}

	// Header, descriptor, padding up to the first grain.
	if err := binary.Write(cw, binary.LittleEndian, newHeader(capacity, gdAtEnd)); err != nil {
		return nil, err
	}
	desc := descriptor(capacity, opt.AdapterType)
	if len(desc) > descSectors*sector {
		return nil, fmt.Errorf("VMDK descriptor too long")
	}
	buf := make([]byte, (overhead-1)*sector)
	copy(buf, desc)
	if _, err := cw.Write(buf); err != nil {
		return nil, err
	}

	numGrains := (capacity + grainSectors - 1) / grainSectors
	numGTs := (numGrains + gtEntries - 1) / gtEntries
	gt := make([]uint32, numGTs*gtEntries) // grain -> sector of its marker

	stats := &Stats{Capacity: size}
	var done int64
	grains := grainsOf(ext, size)
	err = compressAll(ctx, src, grains, func(g int64, data []byte) error {
		off := cw.n / sector
		if off > 1<<32-1 {
			return fmt.Errorf("VMDK over 2 TiB of compressed data")
		}
		gt[g] = uint32(off)
		var m [12]byte
		binary.LittleEndian.PutUint64(m[0:], uint64(g*grainSectors))
		binary.LittleEndian.PutUint32(m[8:], uint32(len(data)))
		if _, err := cw.Write(m[:]); err != nil {
			return err
		}
		if _, err := cw.Write(data); err != nil {
			return err
		}
		stats.DataGrains++
		return pad(cw)
	}, func(n int64) {
		done += n
		if opt.Progress != nil {
			opt.Progress.Add64(n)
		}
	})
	if err != nil {
		return nil, err
	}
	if opt.Progress != nil && size > done {
		opt.Progress.Add64(size - done)
	}

	// Grain tables (only for 32 MiB regions holding data; a zero grain
	// directory entry means "all zeros"), then the directory.
	gd := make([]uint32, numGTs)
	tableSectors := uint64(gtEntries * 4 / sector)
	for t := uint64(0); t < numGTs; t++ {
		entries := gt[t*gtEntries : (t+1)*gtEntries]
		used := false
		for _, e := range entries {
			used = used || e != 0
		}
		if !used {
			continue
		}
		if err := marker(cw, tableSectors, markerGT); err != nil {
			return nil, err
		}
		gd[t] = uint32(cw.n / sector)
		if err := binary.Write(cw, binary.LittleEndian, entries); err != nil {
			return nil, err
		}
	}
	gdSectors := (uint64(len(gd))*4 + sector - 1) / sector
	if err := marker(cw, gdSectors, markerGD); err != nil {
		return nil, err
	}
	gdOffset := uint64(cw.n / sector)
	if err := binary.Write(cw, binary.LittleEndian, gd); err != nil {
		return nil, err
	}
	if err := pad(cw); err != nil {
		return nil, err
	}
	// Footer: the header again, with the directory's real place.
	if err := marker(cw, 1, markerFooter); err != nil {
		return nil, err
	}
	if err := binary.Write(cw, binary.LittleEndian, newHeader(capacity, gdOffset)); err != nil {
		return nil, err
	}
	if err := marker(cw, 0, markerEOS); err != nil {
		return nil, err
	}
	stats.Written = cw.n
	return stats, nil
}

// descriptor is the embedded text descriptor.
func descriptor(capacity uint64, adapter string) []byte {
	// CHS geometry as VMware computes it for IDE: 16 heads, 63 sectors.
	cyl := capacity / (16 * 63)
	if cyl > 16383 {
		cyl = 16383
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Disk DescriptorFile\nversion=1\nCID=%08x\nparentCID=ffffffff\ncreateType=\"streamOptimized\"\n\n", uint32(capacity*2654435761))
	fmt.Fprintf(&b, "# Extent description\nRW %d SPARSE \"disk.vmdk\"\n\n", capacity)
	fmt.Fprintf(&b, "# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = \"4\"\nddb.adapterType = \"%s\"\n", adapter)
	fmt.Fprintf(&b, "ddb.geometry.cylinders = \"%d\"\nddb.geometry.heads = \"16\"\nddb.geometry.sectors = \"63\"\n", cyl)
	return b.Bytes()
}

func marker(w *countWriter, val uint64, typ uint32) error {
	m := make([]byte, sector)
	binary.LittleEndian.PutUint64(m[0:], val)
	binary.LittleEndian.PutUint32(m[12:], typ)
	_, err := w.Write(m)
	return err
}

func pad(w *countWriter) error {
	if r := w.n % sector; r != 0 {
		_, err := w.Write(make([]byte, sector-r))
		return err
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// grainsOf lists the grains that overlap data extents, in order.
func grainsOf(ext []sparse.Extent, size int64) []int64 {
	var out []int64
	last := int64(-1)
	for _, e := range ext {
		for g := e.Off / grainSize; g*grainSize < e.End() && g*grainSize < size; g++ {
			if g > last {
				out = append(out, g)
				last = g
			}
		}
	}
	return out
}

// compressAll reads and deflates grains on all cores and hands them to
// emit in order; all-zero grains are skipped.
func compressAll(ctx context.Context, src *os.File, grains []int64, emit func(int64, []byte) error, consumed func(int64)) error {
	type job struct {
		g    int64
		out  chan []byte
		errc chan error
	}
	workers := runtime.GOMAXPROCS(0)
	jobs := make(chan job, workers*4)
	queue := make(chan job, workers*4)
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			raw := make([]byte, grainSize)
			var zb bytes.Buffer
			zw, _ := zlib.NewWriterLevel(&zb, zlib.BestSpeed)
			for j := range jobs {
				clear(raw)
				n, err := src.ReadAt(raw, j.g*grainSize)
				if err != nil && err != io.EOF {
					j.errc <- fmt.Errorf("read %s at %d: %w", src.Name(), j.g*grainSize, err)
					continue
				}
				if n == 0 || sparse.IsZero(raw[:n]) {
					j.out <- nil
					continue
				}
				zb.Reset()
				zw.Reset(&zb)
				zw.Write(raw) // a short last grain is zero-padded, as VMware does
				zw.Close()
				j.out <- append([]byte(nil), zb.Bytes()...)
			}
		}()
	}
	go func() {
		defer close(queue)
		defer close(jobs)
		for _, g := range grains {
			j := job{g: g, out: make(chan []byte, 1), errc: make(chan error, 1)}
			select {
			case <-ctx.Done():
				return
			case queue <- j:
			}
			jobs <- j
		}
	}()
	var firstErr error
	prev := int64(0)
	for j := range queue {
		if firstErr != nil {
			// drain
			select {
			case <-j.out:
			case <-j.errc:
			}
			continue
		}
		select {
		case data := <-j.out:
			consumed(j.g*grainSize + grainSize - prev)
			prev = j.g*grainSize + grainSize
			if data != nil {
				if err := emit(j.g, data); err != nil {
					firstErr = err
				}
			}
		case err := <-j.errc:
			firstErr = err
		}
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return firstErr
}
