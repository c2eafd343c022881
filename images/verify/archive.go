package verify

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/klauspost/pgzip"

	"github.com/conpaas/cps/images/checksum"
)

// Member is an image found inside an archive.
type Member struct {
	Name     string
	Size     int64
	Sums     checksum.Sums
	Checked  []string
	Problems []string
}

// Archive streams a .tar.gz (parallel gunzip, then tar) and, for every
// disk image inside (.img), computes its checksums and checks its
// structure on the fly: the partition table from the first MiB, then the
// filesystem signature at each partition start as the stream passes it.
// Nothing is extracted. A corrupt or truncated archive is an error.
func Archive(ctx context.Context, path, kind string, algos ...checksum.Algo) ([]Member, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := pgzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("%s is not gzip data (%v): download it again", path, err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	var out []Member
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: broken archive (%v): download it again", path, err)
		}
		if h.Typeflag != tar.TypeReg || !strings.HasSuffix(h.Name, ".img") {
			continue
		}
		m, err := streamImage(ctx, tr, h.Name, h.Size, kind, algos)
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, pgzip.ErrChecksum) || errors.Is(err, pgzip.ErrHeader) {
				return nil, fmt.Errorf("%s: %s is truncated or corrupt inside the archive (%v): download it again", path, h.Name, err)
			}
			return nil, fmt.Errorf("%s: %s: %w", path, h.Name, err)
		}
		out = append(out, *m)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no .img disk image", path)
	}
	return out, nil
}

// regions is a ReaderAt over the parts of a stream kept for the structure
// check; everything else reads as zeros.
type regions struct {
	size   int64
	chunks map[int64][]byte
}

func (r *regions) ReadAt(p []byte, off int64) (int, error) {
	clear(p)
	for start, b := range r.chunks {
		lo, hi := max(off, start), min(off+int64(len(p)), start+int64(len(b)))
		if lo < hi {
			copy(p[lo-off:hi-off], b[lo-start:hi-start])
		}
	}
	if off+int64(len(p)) > r.size {
		n := int(max(r.size-off, 0))
		return n, io.EOF
	}
	return len(p), nil
}

func streamImage(ctx context.Context, r io.Reader, name string, size int64, kind string, algos []checksum.Algo) (*Member, error) {
	m := checksum.NewMulti(algos...)
	head := make([]byte, min(size, 1<<20))
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, err
	}
	m.Write(head)
	reg := &regions{size: size, chunks: map[int64][]byte{0: head}}
	// The partition starts, from the primary table in the first MiB.
	var starts []int64
	if _, parts, err := readTable(reg, size); err == nil {
		for _, p := range parts {
			if p.Start >= int64(len(head)) && p.Start < size {
				starts = append(starts, p.Start)
			}
		}
	}
	sort.Slice(starts, func(i, j int) bool { return starts[i] < starts[j] })
	pos := int64(len(head))
	buf := make([]byte, min(4<<20, size-pos))
	tailFrom := max(size-64<<10, 0)
	for pos < size {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n := min(int64(len(buf)), size-pos)
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			return nil, err
		}
		m.Write(buf[:n])
		for _, s := range starts {
			if s >= pos && s < pos+n {
				end := min(s+4096, pos+n)
				reg.chunks[s] = append([]byte(nil), buf[s-pos:end-pos]...)
			}
		}
		if pos+n > tailFrom {
			from := max(tailFrom, pos)
			reg.chunks[from] = append([]byte(nil), buf[from-pos:n]...)
		}
		pos += n
	}
	checked, problems := checkDisk(reg, size, kind)
	return &Member{Name: name, Size: size, Sums: m.Sum(), Checked: checked, Problems: problems}, nil
}
