// Package checksum computes MD5, SHA1, SHA256 and SHA512 of an artifact in
// one pass over its bytes, reading only the data extents of sparse files,
// and reads and writes md5sum/sha256sum-format side files.
package checksum

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/conpaas/cps/images/sparse"
	"github.com/conpaas/cps/internal/atomicfile"
	"github.com/conpaas/cps/internal/input"
)

// Algo names a hash algorithm as md5sum-style tools do.
type Algo string

const (
	MD5    Algo = "md5"
	SHA1   Algo = "sha1"
	SHA256 Algo = "sha256"
	SHA512 Algo = "sha512"
)

// All is every supported algorithm, in the order they are reported.
var All = []Algo{MD5, SHA1, SHA256, SHA512}

// ParseAlgo accepts "md5", "sha256", "SHA-256", ...
func ParseAlgo(s string) (Algo, error) {
	a := Algo(strings.ReplaceAll(strings.ToLower(s), "-", ""))
	for _, k := range All {
		if a == k {
			return a, nil
		}
	}
	return "", fmt.Errorf("unknown checksum algorithm %q (want md5, sha1, sha256 or sha512)", s)
}

func (a Algo) new() hash.Hash {
	switch a {
	case MD5:
		return md5.New()
	case SHA1:
		return sha1.New()
	case SHA256:
		return sha256.New()
	default:
		return sha512.New()
	}
}

// HexLen is the length of the algorithm's digest in hex.
func (a Algo) HexLen() int {
	switch a {
	case MD5:
		return 32
	case SHA1:
		return 40
	case SHA256:
		return 64
	default:
		return 128
	}
}

// Sums holds the digests computed (hex, lower case) and the byte count.
type Sums struct {
	Size   int64  `json:"size"`
	MD5    string `json:"md5,omitempty"`
	SHA1   string `json:"sha1,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	SHA512 string `json:"sha512,omitempty"`
}

// Get returns the digest for a.
func (s Sums) Get(a Algo) string {
	switch a {
	case MD5:
		return s.MD5
	case SHA1:
		return s.SHA1
	case SHA256:
		return s.SHA256
	default:
		return s.SHA512
	}
}

func (s *Sums) set(a Algo, v string) {
	switch a {
	case MD5:
		s.MD5 = v
	case SHA1:
		s.SHA1 = v
	case SHA256:
		s.SHA256 = v
	default:
		s.SHA512 = v
	}
}

// Multi is an io.Writer that feeds every byte to several hashers, each in
// its own goroutine, so four hashes cost roughly the slowest one on a
// multi-core machine. Write hands the buffer to the hashers and waits until
// all of them have consumed it, so callers may reuse their buffer; callers
// that want overlap between reading and hashing use WriteAsync.
type Multi struct {
	algos []Algo
	hs    []hash.Hash
	chans []chan []byte
	wg    sync.WaitGroup // hashers done with the current buffer
	done  sync.WaitGroup // hasher goroutines exited
	n     int64
	once  sync.Once
}

// NewMulti starts one goroutine per algorithm. Call Sum exactly once.
func NewMulti(algos ...Algo) *Multi {
	if len(algos) == 0 {
		algos = []Algo{MD5}
	}
	m := &Multi{algos: algos}
	for _, a := range algos {
		h := a.new()
		ch := make(chan []byte)
		m.hs = append(m.hs, h)
		m.chans = append(m.chans, ch)
		m.done.Add(1)
		go func() {
			defer m.done.Done()
			for b := range ch {
				h.Write(b)
				m.wg.Done()
			}
		}()
	}
	return m
}

// Write implements io.Writer.
func (m *Multi) Write(p []byte) (int, error) {
	if len(m.hs) == 1 { // no goroutine hop for the common md5-only case
		m.wg.Add(1)
		m.chans[0] <- p
		m.wg.Wait()
		m.n += int64(len(p))
		return len(p), nil
	}
	m.wg.Add(len(m.chans))
	for _, ch := range m.chans {
		ch <- p
	}
	m.wg.Wait()
	m.n += int64(len(p))
	return len(p), nil
}

// Sum stops the hashers and returns the digests.
func (m *Multi) Sum() Sums {
	m.once.Do(func() {
		for _, ch := range m.chans {
			close(ch)
		}
		m.done.Wait()
	})
	s := Sums{Size: m.n}
	for i, a := range m.algos {
		s.set(a, hex.EncodeToString(m.hs[i].Sum(nil)))
	}
	return s
}

// Progress receives byte counts as they are hashed (holes included).
type Progress interface{ Add64(int64) }

// Options for File.
type Options struct {
	Algos    []Algo   // default: MD5
	Progress Progress // optional
	// ChunkSize is the read size; default 4 MiB (large aligned reads).
	ChunkSize int
}

var zeroChunk = make([]byte, 4<<20)

// File hashes path in one pass: a regular file (holes of sparse files are
// fed to the hashers as zeros without being read from disk), a block
// device (its BLKGETSIZE64 bytes), or a pipe, FIFO or character device
// read to EOF; "-" is standard input.
func File(ctx context.Context, path string, opt Options) (Sums, error) {
	f, err := input.Open(ctx, path)
	if err != nil {
		return Sums{}, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	return Input(ctx, f, opt)
}

// Input hashes an opened input in one pass (see File).
func Input(ctx context.Context, f *input.File, opt Options) (Sums, error) {
	if f.Kind == input.Stream {
		return stream(ctx, f, opt)
	}
	ext, err := sparse.DataExtents(f.File)
	if err != nil {
		return Sums{}, err
	}
	m := NewMulti(opt.Algos...)
	chunk := opt.ChunkSize
	if chunk <= 0 {
		chunk = 4 << 20
	}
	// Two buffers: one is hashed while the next is read.
	bufs := [2][]byte{make([]byte, chunk), make([]byte, chunk)}
	feedZeros := func(n int64) error {
		for n > 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			c := int64(len(zeroChunk))
			if c > n {
				c = n
			}
			m.Write(zeroChunk[:c])
			if opt.Progress != nil {
				opt.Progress.Add64(c)
			}
			n -= c
		}
		return nil
	}
	pos := int64(0)
	for _, e := range ext {
		if err := feedZeros(e.Off - pos); err != nil {
			m.Sum()
			return Sums{}, err
		}
		if err := readRange(ctx, f.File, m, bufs, e, opt.Progress); err != nil {
			m.Sum()
			return Sums{}, err
		}
		pos = e.End()
	}
	if err := feedZeros(f.Size - pos); err != nil {
		m.Sum()
		return Sums{}, err
	}
	return m.Sum(), nil
}

// stream hashes a pipe, FIFO or character device to EOF.
func stream(ctx context.Context, f *input.File, opt Options) (Sums, error) {
	m := NewMulti(opt.Algos...)
	buf := make([]byte, 1<<20)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			m.Write(buf[:n])
			if opt.Progress != nil {
				opt.Progress.Add64(int64(n))
			}
		}
		if err == io.EOF {
			return m.Sum(), nil
		}
		if err != nil {
			m.Sum()
			return Sums{}, fmt.Errorf("read %s: %w", f.Name(), err)
		}
	}
}

// readRange reads e from f and feeds it to m, overlapping the read of one
// chunk with the hashing of the previous one.
func readRange(ctx context.Context, f *os.File, m *Multi, bufs [2][]byte, e sparse.Extent, p Progress) error {
	hashed := make(chan error, 1)
	pending := false
	i := 0
	off := e.Off
	for off < e.End() {
		if err := ctx.Err(); err != nil {
			if pending {
				<-hashed
			}
			return err
		}
		b := bufs[i]
		n := int64(len(b))
		if rem := e.End() - off; rem < n {
			n = rem
		}
		r, err := f.ReadAt(b[:n], off)
		if err != nil && !(err == io.EOF && int64(r) == n) {
			if pending {
				<-hashed
			}
			if err == io.EOF {
				return fmt.Errorf("read %s at %d: file shrank while reading (truncated?)", f.Name(), off+int64(r))
			}
			return fmt.Errorf("read %s at %d: %w", f.Name(), off, err)
		}
		if pending {
			<-hashed
		}
		pending = true
		go func(b []byte) {
			m.Write(b)
			if p != nil {
				p.Add64(int64(len(b)))
			}
			hashed <- nil
		}(b[:n])
		off += n
		i ^= 1
	}
	if pending {
		<-hashed
	}
	return nil
}

// Reader hashes a stream (e.g. a file inside a tar.gz) in one pass.
func Reader(ctx context.Context, r io.Reader, algos ...Algo) (Sums, error) {
	m := NewMulti(algos...)
	buf := make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			m.Sum()
			return Sums{}, err
		}
		n, err := r.Read(buf)
		if n > 0 {
			m.Write(buf[:n])
		}
		if err == io.EOF {
			return m.Sum(), nil
		}
		if err != nil {
			m.Sum()
			return Sums{}, err
		}
	}
}

// SideFile is the path of the checksum file written next to an artifact,
// e.g. conpaas.img.md5.
func SideFile(artifact string, a Algo) string { return artifact + "." + string(a) }

// Escape escapes a file name as md5sum does in its output: a name holding
// a backslash, newline or carriage return has them written as \\, \n and
// \r, and the line that carries it starts with a backslash (escaped is
// true). Other names are returned as they are.
func Escape(name string) (s string, escaped bool) {
	if !strings.ContainsAny(name, "\\\n\r") {
		return name, false
	}
	return strings.NewReplacer("\\", "\\\\", "\n", "\\n", "\r", "\\r").Replace(name), true
}

// Line is the md5sum output line for a file: "HEX  NAME\n", or
// "\\HEX  ESCAPED-NAME\n" for a name Escape changes.
func Line(hex, name string) string {
	n, esc := Escape(name)
	if esc {
		return "\\" + hex + "  " + n + "\n"
	}
	return hex + "  " + n + "\n"
}

// TagLine is the BSD-style line md5sum --tag prints: "MD5 (NAME) = HEX\n",
// escaped like Line.
func TagLine(a Algo, hex, name string) string {
	n, esc := Escape(name)
	l := strings.ToUpper(string(a)) + " (" + n + ") = " + hex + "\n"
	if esc {
		return "\\" + l
	}
	return l
}

// WriteSideFiles writes ARTIFACT.md5, ARTIFACT.sha256, ... in md5sum format
// ("<hex>  <basename>\n", the name escaped as md5sum escapes it) so
// `md5sum -c conpaas.img.md5` works from the artifact's directory. Each
// file is written atomically.
func WriteSideFiles(artifact string, s Sums, algos ...Algo) error {
	for _, a := range algos {
		v := s.Get(a)
		if v == "" {
			return fmt.Errorf("no %s digest computed for %s", a, artifact)
		}
		line := Line(v, filepath.Base(artifact))
		if err := atomicfile.WriteFile(SideFile(artifact, a), []byte(line), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// ParseAlgos parses a template's checksums list; an empty list means MD5
// and SHA256 (the side files and catalogue fields every build gets).
func ParseAlgos(names []string) ([]Algo, error) {
	if len(names) == 0 {
		names = []string{"md5", "sha256"}
	}
	out := make([]Algo, 0, len(names))
	for _, n := range names {
		a, err := ParseAlgo(n)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}
