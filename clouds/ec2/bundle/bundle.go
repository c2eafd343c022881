// Package bundle writes and reads EC2 image bundles, the format of the old
// ec2-ami-tools (ec2-bundle-image / ec2-unbundle) that S3-backed
// (instance-store) AMIs are registered from:
//
//	tar(image) | gzip | openssl enc -aes-128-cbc -K key -iv iv | split -b 10MiB
//
// gives NAME.part.0, NAME.part.1, ... and NAME.manifest.xml (manifest
// version 2007-10-10) records the SHA1 of the tar stream, the image and
// bundle sizes, each part's SHA1, and the AES key and IV encrypted with RSA
// (PKCS#1 v1.5) for the user's certificate and for EC2's certificate, so
// both can unbundle. The manifest is signed with the user's private key
// (RSA-SHA1 over the <machine_configuration> and <image> elements of its
// REXML form, as the tools do: rexml.go). Everything is streamed: the
// image is read once, holes are not read from disk, and parts are handed
// out as soon as their names are known.
package bundle

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/pgzip"
)

// PartSize is ec2-bundle-image's part size (10 MB).
const PartSize = 10 << 20

// Keys are the certificates and key a bundle is made with.
type Keys struct {
	UserCert *x509.Certificate // the user's X.509 certificate (-c)
	UserKey  *rsa.PrivateKey   // its private key (-k), signs the manifest
	EC2Cert  *x509.Certificate // EC2's certificate (--ec2cert)
}

// Options describe the bundle.
type Options struct {
	Name    string // image file name inside the tar and prefix of the parts, e.g. conpaas.img
	Arch    string // EC2 architecture: x86_64 | arm64 | i386
	Account string // AWS account id (12 digits), the manifest's <user>
	// PartSize overrides PartSize (tests).
	PartSize int
	// ModTime is the tar entry's modification time.
	ModTime time.Time
	// SpoolDir holds the parts made before their names are known (see
	// splitter); default os.TempDir().
	SpoolDir string
	Keys
}

// Part is one encrypted part of the bundle.
type Part struct {
	Index int
	Name  string // NAME.part.NN
	Data  []byte
	SHA1  [sha1.Size]byte
}

// Write bundles the size bytes read from image and calls emit with each
// part in order as it fills (emit may keep Data). It returns the signed
// manifest; its file name is ManifestName(opt.Name).
func Write(ctx context.Context, image io.Reader, size int64, opt Options, emit func(Part) error) ([]byte, error) {
	if opt.UserCert == nil || opt.UserKey == nil || opt.EC2Cert == nil {
		return nil, errors.New("a bundle needs the user's certificate and private key and EC2's certificate")
	}
	if opt.Name == "" || strings.ContainsAny(opt.Name, "/\\") {
		return nil, fmt.Errorf("bundle name %q must be a plain file name", opt.Name)
	}
	userPub, ok := opt.UserCert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, errors.New("the user certificate's key is not RSA (ec2 bundles need RSA)")
	}
	ec2Pub, ok := opt.EC2Cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, errors.New("EC2's certificate key is not RSA")
	}
	if !userPub.Equal(&opt.UserKey.PublicKey) {
		return nil, errors.New("the private key does not belong to the user certificate")
	}
	partSize := opt.PartSize
	if partSize <= 0 {
		partSize = PartSize
	}
	key, iv := make([]byte, 16), make([]byte, 16)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if _, err := rand.Read(iv); err != nil {
		return nil, err
	}
	block, _ := aes.NewCipher(key)

	parts := &splitter{size: partSize, name: opt.Name, emit: emit, max: maxParts(size, partSize), spoolDir: opt.SpoolDir}
	defer parts.closeSpool()
	enc := &cbcWriter{mode: cipher.NewCBCEncrypter(block, iv), w: parts}
	gz, err := pgzip.NewWriterLevel(enc, pgzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	tarSum := sha1.New()
	tw := tar.NewWriter(io.MultiWriter(gz, tarSum))
	mtime := opt.ModTime
	if mtime.IsZero() {
		mtime = time.Unix(0, 0)
	}
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: opt.Name, Size: size, Mode: 0o644, ModTime: mtime.UTC().Truncate(time.Second),
		Uname: "root", Gname: "root", Format: tar.FormatGNU}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, fmt.Errorf("bundle tar header: %w", err)
	}
	n, err := io.Copy(tw, &ctxReader{ctx: ctx, r: image})
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", opt.Name, err)
	}
	if n != size {
		return nil, fmt.Errorf("bundle %s: read %d of %d bytes (the image changed or is truncated)", opt.Name, n, size)
	}
	for _, c := range []io.Closer{tw, gz, enc, parts} {
		if err := c.Close(); err != nil {
			return nil, fmt.Errorf("bundle %s: %w", opt.Name, err)
		}
	}

	encrypt := func(pub *rsa.PublicKey, b []byte) (string, error) {
		// The tools encrypt the hex string of the key, not its bytes.
		//lint:ignore SA1019 the bundle format wraps the key with RSA PKCS#1 v1.5 (ec2-bundle-image: public_encrypt with PKCS1_PADDING); EC2 decrypts only that
		c, err := rsa.EncryptPKCS1v15(rand.Reader, pub, []byte(hex.EncodeToString(b)))
		return hex.EncodeToString(c), err
	}
	m := Manifest{Arch: opt.Arch, Name: opt.Name, User: opt.Account, Digest: hex.EncodeToString(tarSum.Sum(nil)),
		Size: size, BundledSize: enc.n}
	for _, x := range []struct {
		dst *string
		pub *rsa.PublicKey
		b   []byte
	}{{&m.EC2Key, ec2Pub, key}, {&m.UserKey, userPub, key}, {&m.EC2IV, ec2Pub, iv}, {&m.UserIV, userPub, iv}} {
		if *x.dst, err = encrypt(x.pub, x.b); err != nil {
			return nil, fmt.Errorf("encrypt the bundle key: %w", err)
		}
	}
	m.Parts = parts.done
	return m.sign(opt.UserKey)
}

// ManifestName is the manifest's file name for an image name.
func ManifestName(name string) string { return name + ".manifest.xml" }

// partName is the name of part i, as ec2-bundle-image names it
// (FileUtil.split): the index zero-padded to width, the number of digits
// of the part count, so NAME.part.0 for one part and NAME.part.00 ...
// NAME.part.42 for 43.
func partName(name string, i, width int) string {
	return fmt.Sprintf("%s.part.%0*d", name, width, i)
}

func digits(n int) int { return len(strconv.Itoa(n)) }

// maxParts bounds the number of parts of an image of size bytes: the tar
// stream (header, data padded to 512 bytes, two end blocks), deflate's
// worst case (stored blocks: 5 bytes per 64 KiB, here a generous 1/1000,
// plus gzip framing and pgzip's per-block flushes within 1 MiB) and the
// AES padding, cut into parts of partSize.
func maxParts(size int64, partSize int) int {
	tarSize := 512 + (size+511)/512*512 + 1024
	return int((tarSize + tarSize/1000 + 1<<20 + aes.BlockSize + int64(partSize) - 1) / int64(partSize))
}

// splitter cuts the encrypted stream into parts. A part's name depends on
// how many parts there will be, known only at the end of the stream; parts
// are handed out as soon as the width of that number is certain (when
// there are as many digits' worth of parts as the upper bound has) and
// held in a spool file until then.
type splitter struct {
	size  int
	name  string
	max   int // upper bound of the part count
	emit  func(Part) error
	buf   []byte
	cut   int // parts cut so far
	width int // digits of the final count, 0 while unknown

	spoolDir string
	spool    *os.File // parts cut while the width was unknown, back to back
	held     []heldPart
	done     []PartRef
}

type heldPart struct {
	len  int
	sha1 [sha1.Size]byte
}

func (s *splitter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if s.buf == nil {
			s.buf = make([]byte, 0, s.size)
		}
		k := min(len(p), s.size-len(s.buf))
		s.buf = append(s.buf, p[:k]...)
		p = p[k:]
		if len(s.buf) == s.size {
			if err := s.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

// flush cuts the buffered bytes as the next part.
func (s *splitter) flush() error {
	data, sum := s.buf, sha1.Sum(s.buf)
	s.buf = nil
	s.cut++
	if s.cut > s.max {
		return fmt.Errorf("bundle has more than the %d parts its size allows", s.max)
	}
	if s.width == 0 && digits(s.cut) == digits(s.max) {
		s.width = digits(s.max)
		if err := s.release(); err != nil {
			return err
		}
	}
	if s.width == 0 {
		return s.hold(data, sum)
	}
	return s.send(data, sum)
}

func (s *splitter) hold(data []byte, sum [sha1.Size]byte) error {
	if s.spool == nil {
		f, err := os.CreateTemp(s.spoolDir, "cps-bundle-*")
		if err != nil {
			return fmt.Errorf("bundle spool file: %w", err)
		}
		os.Remove(f.Name()) // nothing is left behind, whatever happens
		s.spool = f
	}
	if _, err := s.spool.Write(data); err != nil {
		return fmt.Errorf("bundle spool file: %w", err)
	}
	s.held = append(s.held, heldPart{len(data), sum})
	return nil
}

// release hands out the held parts now that their names are known.
func (s *splitter) release() error {
	var off int64
	for _, h := range s.held {
		data := make([]byte, h.len)
		if _, err := s.spool.ReadAt(data, off); err != nil {
			return fmt.Errorf("bundle spool file: %w", err)
		}
		off += int64(h.len)
		if err := s.send(data, h.sha1); err != nil {
			return err
		}
	}
	s.held = nil
	return s.closeSpool()
}

func (s *splitter) closeSpool() error {
	if s.spool == nil {
		return nil
	}
	err := s.spool.Close()
	s.spool = nil
	return err
}

func (s *splitter) send(data []byte, sum [sha1.Size]byte) error {
	i := len(s.done)
	name := partName(s.name, i, s.width)
	s.done = append(s.done, PartRef{Name: name, SHA1: hex.EncodeToString(sum[:])})
	return s.emit(Part{Index: i, Name: name, Data: data, SHA1: sum})
}

func (s *splitter) Close() error {
	if len(s.buf) > 0 || s.cut == 0 {
		if err := s.flush(); err != nil {
			return err
		}
	}
	if s.width == 0 {
		s.width = digits(s.cut)
		return s.release()
	}
	return nil
}

// cbcWriter encrypts a stream with AES-CBC and PKCS#7 padding, as
// `openssl enc -aes-128-cbc` does.
type cbcWriter struct {
	mode cipher.BlockMode
	w    io.Writer
	rest []byte // < one block, waiting for more
	n    int64  // ciphertext bytes written
}

func (c *cbcWriter) Write(p []byte) (int, error) {
	n := len(p)
	buf := append(c.rest, p...)
	full := len(buf) - len(buf)%aes.BlockSize
	if full > 0 {
		out := make([]byte, full)
		c.mode.CryptBlocks(out, buf[:full])
		if _, err := c.w.Write(out); err != nil {
			return 0, err
		}
		c.n += int64(full)
	}
	c.rest = append([]byte(nil), buf[full:]...)
	return n, nil
}

func (c *cbcWriter) Close() error {
	pad := aes.BlockSize - len(c.rest)
	last := append(c.rest, bytes.Repeat([]byte{byte(pad)}, pad)...)
	c.mode.CryptBlocks(last, last)
	c.rest = nil
	c.n += int64(len(last))
	_, err := c.w.Write(last)
	return err
}

// ctxReader stops a long read when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// LoadKeys reads PEM files: the user's certificate and private key (PKCS#1
// or PKCS#8 RSA) and EC2's certificate.
func LoadKeys(certFile, keyFile, ec2CertFile string) (Keys, error) {
	var k Keys
	var err error
	if k.UserCert, err = loadCert(certFile, "user certificate"); err != nil {
		return k, err
	}
	if k.EC2Cert, err = loadCert(ec2CertFile, "EC2 certificate"); err != nil {
		return k, err
	}
	b, err := readPEM(keyFile, "private key")
	if err != nil {
		return k, err
	}
	if k.UserKey, err = x509.ParsePKCS1PrivateKey(b.Bytes); err != nil {
		pk, err8 := x509.ParsePKCS8PrivateKey(b.Bytes)
		if err8 != nil {
			return k, fmt.Errorf("private key %s is neither a PKCS#1 nor a PKCS#8 RSA key: %w", keyFile, err)
		}
		var ok bool
		if k.UserKey, ok = pk.(*rsa.PrivateKey); !ok {
			return k, fmt.Errorf("private key %s is not an RSA key (ec2 bundles need RSA)", keyFile)
		}
	}
	return k, nil
}

func loadCert(file, what string) (*x509.Certificate, error) {
	b, err := readPEM(file, what)
	if err != nil {
		return nil, err
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s %s is not an X.509 certificate: %w", what, file, err)
	}
	return c, nil
}

func readPEM(file, what string) (*pem.Block, error) {
	if file == "" {
		return nil, fmt.Errorf("no %s file given", what)
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read the %s: %w", what, err)
	}
	b, _ := pem.Decode(raw)
	if b == nil {
		return nil, fmt.Errorf("%s %s is not PEM", what, filepath.Base(file))
	}
	return b, nil
}

// hashWriter counts and hashes.
type hashWriter struct {
	h hash.Hash
	n int64
}

func (w *hashWriter) Write(p []byte) (int, error) {
	w.h.Write(p)
	w.n += int64(len(p))
	return len(p), nil
}
