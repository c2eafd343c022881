package disk

import (
	"fmt"
	"strings"

	"github.com/conpaas/cps/images/ptable"
	"github.com/conpaas/cps/plan"
)

// The whole layout is checked before anything is built: a template whose
// partitions cannot fit its disk used to be found out only after the root
// filesystem had been bootstrapped (minutes later). CheckLayout is a pure
// function of the image, so `cpsimage validate`, the template loader and a
// kind's Prepare can all call it, and each problem names the template
// attribute it is about so the loader can point at its file:line:col.

const (
	// MinSize is the smallest image: partitions start at 1 MiB (as parted
	// and sfdisk place them), and a filesystem image below 1 MiB holds no
	// root filesystem either.
	MinSize = mib
	// MaxSize is the largest image: 16 TiB is the largest file ext4 (the
	// usual output directory's filesystem) can hold and the largest EBS
	// gp3 volume an image is registered as.
	MaxSize = 16 << 40
	// MaxAlignment keeps alignment a boundary, not a disk size: 1 GiB is
	// far above any erase block or RAID stripe.
	MaxAlignment = 1 << 30
)

// Problem is one thing wrong with an image's disk layout. Attr is the
// template attribute it is about ("size", "alignment",
// "partition_table"): of partition Partition (an index into the image's
// partitions, in template order), or of the image when Partition is -1.
type Problem struct {
	Partition int
	Attr      string
	Msg       string
}

// LayoutError lists what is wrong with an image's layout.
type LayoutError struct {
	Image    string
	Problems []Problem
}

func (e *LayoutError) Error() string {
	msgs := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = p.Msg
	}
	if e.Image == "" {
		return strings.Join(msgs, "; ")
	}
	return fmt.Sprintf("image %q: %s", e.Image, strings.Join(msgs, "; "))
}

// HasPartitionTable says whether images of kind have a partition table
// laid out by Layout (raw and sdcard); an lxc image is one filesystem, an
// ova takes its disk from its source image.
func HasPartitionTable(kind string) bool {
	return kind == plan.KindRaw || kind == plan.KindSDCard
}

// CheckLayout checks img's disk without changing it: the size within
// MinSize..MaxSize and a multiple of the sector; the alignment a power of
// two, a multiple of the sector and at most MaxAlignment; the partition
// table known and able to address the disk; each partition's size; at most
// one partition filling the rest; and that the partitions, laid out as
// Layout places them, fit the disk without overlapping. An image whose
// partitions are not yet known (a kind's defaults come later) is checked
// without them. The error is a *LayoutError, or nil.
func CheckLayout(img *plan.Image) error {
	var ps []Problem
	add := func(part int, attr, format string, args ...any) {
		ps = append(ps, Problem{Partition: part, Attr: attr, Msg: fmt.Sprintf(format, args...)})
	}
	if img.Kind == plan.KindOVA {
		return nil // its disk is its source image's
	}
	sizeOK := false
	switch {
	case img.Size < MinSize:
		add(-1, "size", "size %s is too small: an image is at least %s (partitions start at 1 MiB), and must hold its partitions", human(img.Size), human(MinSize))
	case img.Size > MaxSize:
		add(-1, "size", "size %s is over the %s limit (the largest file ext4 holds and the largest EBS gp3 volume)", human(img.Size), human(MaxSize))
	case img.Size%ptable.Sector != 0:
		add(-1, "size", "size %d is not a multiple of the %d-byte sector", img.Size, ptable.Sector)
	default:
		sizeOK = true
	}
	if !HasPartitionTable(img.Kind) {
		return layoutError(img.Name, ps)
	}

	align := img.Alignment
	alignOK := true
	switch {
	case align == 0:
		align = mib // the kind's default comes later; any power of two lays out alike for the checks below
	case align < 0 || align%ptable.Sector != 0:
		add(-1, "alignment", "alignment %d is not a multiple of the %d-byte sector; use e.g. \"1MiB\" or \"4MiB\" (the SD card erase block)", align, ptable.Sector)
		alignOK = false
	case align&(align-1) != 0:
		add(-1, "alignment", "alignment %s is not a power of two: partitions must start on a boundary that divides the disk's erase blocks and 4 KiB sectors; use e.g. \"1MiB\", \"2MiB\" or \"4MiB\"", human(align))
		alignOK = false
	case align > MaxAlignment:
		add(-1, "alignment", "alignment %s is over %s: it is the boundary partitions start on, not a size; use e.g. \"1MiB\" or \"4MiB\"", human(align), human(MaxAlignment))
		alignOK = false
	}

	tableOK := true
	switch img.PartitionTable {
	case ptable.GPT, "":
		if sizeOK && img.Size < 2*mib {
			add(-1, "size", "size %s is too small for a GPT disk: it needs at least 2 MiB (the first MiB before the partitions, the backup table at the end)", human(img.Size))
			sizeOK = false
		}
	case ptable.MBR:
		if sizeOK && img.Size/ptable.Sector > mbrMaxSectors {
			add(-1, "size", "size %s is over the 2 TiB an MBR table can address; use partition_table = \"gpt\"", human(img.Size))
			sizeOK = false
		}
		if len(img.Partitions) > 4 {
			add(-1, "partition_table", "an MBR table holds at most 4 primary partitions, the image declares %d; use partition_table = \"gpt\" or fewer partitions", len(img.Partitions))
			tableOK = false
		}
	default:
		add(-1, "partition_table", "unknown partition table %q; use \"gpt\" or \"mbr\"", img.PartitionTable)
		tableOK = false
	}

	partsOK := true
	fill := -1
	for i, p := range img.Partitions {
		switch {
		case p.Size < 0:
			add(i, "size", "partition %q: size %d is negative", p.Name, p.Size)
			partsOK = false
		case p.Size%ptable.Sector != 0:
			add(i, "size", "partition %q: size %d is not a multiple of the %d-byte sector", p.Name, p.Size, ptable.Sector)
			partsOK = false
		case p.Size > MaxSize:
			add(i, "size", "partition %q: size %s is over the %s an image may be", p.Name, human(p.Size), human(MaxSize))
			partsOK = false
		case p.Size == 0 && fill >= 0:
			add(i, "size", "partitions %q and %q both fill the rest of the disk (size \"*\" or none); give one of them a size", img.Partitions[fill].Name, p.Name)
			partsOK = false
		case p.Size == 0:
			fill = i
		}
	}
	if !sizeOK || !alignOK || !tableOK || !partsOK || len(img.Partitions) == 0 {
		return layoutError(img.Name, ps)
	}

	// Lay the partitions out on a copy, as the build will, and check
	// the result rather than trust it.
	parts := append([]plan.Partition(nil), img.Partitions...)
	if err := Layout(img.Size, align, img.PartitionTable, parts); err != nil {
		ps = append(ps, fitProblem(img, err))
		return layoutError(img.Name, ps)
	}
	first, last, _ := usable(img.Size, img.PartitionTable)
	for i, p := range parts {
		switch {
		case p.Start < first || p.End > last || p.End <= p.Start:
			add(i, "size", "partition %q lies at bytes %d-%d, outside the disk's usable %d-%d", p.Name, p.Start, p.End, first, last)
		case p.Start%align != 0:
			add(i, "size", "partition %q starts at %d, not on the %d-byte alignment", p.Name, p.Start, align)
		case i > 0 && p.Start < parts[i-1].End:
			add(i, "size", "partition %q (bytes %d-%d) overlaps %q (bytes %d-%d)", p.Name, p.Start, p.End, parts[i-1].Name, parts[i-1].Start, parts[i-1].End)
		}
	}
	return layoutError(img.Name, ps)
}

// fitProblem says which attribute to change when the partitions do not
// fit: the partition when it alone is larger than the disk, else the
// image's size (Layout's error says the size needed).
func fitProblem(img *plan.Image, err error) Problem {
	first, last, _ := usable(img.Size, img.PartitionTable)
	for i, p := range img.Partitions {
		if p.Size > last-first {
			return Problem{Partition: i, Attr: "size", Msg: fmt.Sprintf("partition %q (%s) does not fit in the %s disk (%s usable after the partition table); make it smaller or set the image's size to at least %s",
				p.Name, human(p.Size), human(img.Size), human(last-first), human(roundUp(first+p.Size+(img.Size-last), mib)))}
		}
	}
	return Problem{Partition: -1, Attr: "size", Msg: err.Error()}
}

func layoutError(name string, ps []Problem) error {
	if len(ps) == 0 {
		return nil
	}
	return &LayoutError{Image: name, Problems: ps}
}

// human writes n bytes as the largest binary unit that divides it, as a
// template would ("10MiB"), else in bytes.
func human(n int64) string {
	for _, u := range []struct {
		s string
		n int64
	}{{"EiB", 1 << 60}, {"PiB", 1 << 50}, {"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.n == 0 {
			return fmt.Sprintf("%d %s", n/u.n, u.s)
		}
	}
	if n >= mib {
		return fmt.Sprintf("%d bytes (%.2f MiB)", n, float64(n)/mib)
	}
	return fmt.Sprintf("%d bytes", n)
}
