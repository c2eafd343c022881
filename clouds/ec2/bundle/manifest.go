package bundle

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/pgzip"
)

// ManifestVersion is the manifest format ec2-bundle-image writes.
const ManifestVersion = "2007-10-10"

// PartRef is a part as the manifest lists it.
type PartRef struct {
	Name string // file name, relative to the manifest
	SHA1 string // hex
}

// Manifest is a bundle manifest.
type Manifest struct {
	Arch        string
	Name        string
	User        string // account id
	Digest      string // hex SHA1 of the tar stream
	Size        int64  // image bytes
	BundledSize int64  // encrypted bytes (sum of the parts)
	// Hex of RSA PKCS#1 v1.5 ciphertexts of the hex AES key and IV.
	EC2Key, UserKey, EC2IV, UserIV string
	Parts                          []PartRef
	Signature                      string // hex RSA-SHA1 by the user's key
}

// document writes the manifest in REXML's output form (rexml.go), element
// for element as ManifestV20071010#init builds it: single-quoted
// attributes, no whitespace, no newline at the end. The signature covers
// the machine_configuration and image elements of exactly these bytes.
func (m *Manifest) document(signature string) string {
	var b strings.Builder
	b.WriteString("<?xml version='1.0'?><manifest><version>" + ManifestVersion + "</version>" +
		"<bundler><name>cpsimage</name><version>1.0</version><release>1</release></bundler>")
	fmt.Fprintf(&b, "<machine_configuration><architecture>%s</architecture></machine_configuration>", rexmlText(m.Arch))
	fmt.Fprintf(&b, "<image><name>%s</name><user>%s</user><type>machine</type><digest algorithm='SHA1'>%s</digest>"+
		"<size>%d</size><bundled_size>%d</bundled_size>"+
		"<ec2_encrypted_key algorithm='AES-128-CBC'>%s</ec2_encrypted_key><user_encrypted_key algorithm='AES-128-CBC'>%s</user_encrypted_key>"+
		"<ec2_encrypted_iv>%s</ec2_encrypted_iv><user_encrypted_iv>%s</user_encrypted_iv><parts count='%d'>",
		rexmlText(m.Name), rexmlText(m.User), m.Digest, m.Size, m.BundledSize, m.EC2Key, m.UserKey, m.EC2IV, m.UserIV, len(m.Parts))
	for i, p := range m.Parts {
		fmt.Fprintf(&b, "<part index='%d'><filename>%s</filename><digest algorithm='SHA1'>%s</digest></part>", i, rexmlText(p.Name), p.SHA1)
	}
	b.WriteString("</parts></image>")
	if signature != "" {
		b.WriteString("<signature>" + signature + "</signature>")
	}
	b.WriteString("</manifest>")
	return b.String()
}

// sign signs the manifest with the user's key and returns the document.
// The signature scheme is fixed by the bundle format: RSA PKCS#1 v1.5 with
// SHA-1, the only one ec2-ami-tools and EC2 verify.
func (m *Manifest) sign(k *rsa.PrivateKey) ([]byte, error) {
	data, err := signedBytes([]byte(m.document("")))
	if err != nil {
		return nil, err
	}
	sum := sha1.Sum(data)
	sig, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA1, sum[:])
	if err != nil {
		return nil, fmt.Errorf("sign the manifest: %w", err)
	}
	m.Signature = hex.EncodeToString(sig)
	return []byte(m.document(m.Signature)), nil
}

// xmlManifest is the parse shape.
type xmlManifest struct {
	Version string `xml:"version"`
	Arch    string `xml:"machine_configuration>architecture"`
	Image   struct {
		Name        string `xml:"name"`
		User        string `xml:"user"`
		Digest      string `xml:"digest"`
		Size        int64  `xml:"size"`
		BundledSize int64  `xml:"bundled_size"`
		EC2Key      string `xml:"ec2_encrypted_key"`
		UserKey     string `xml:"user_encrypted_key"`
		EC2IV       string `xml:"ec2_encrypted_iv"`
		UserIV      string `xml:"user_encrypted_iv"`
		Parts       struct {
			Count int `xml:"count,attr"`
			Part  []struct {
				Index    int    `xml:"index,attr"`
				Filename string `xml:"filename"`
				Digest   string `xml:"digest"`
			} `xml:"part"`
		} `xml:"parts"`
	} `xml:"image"`
	Signature string `xml:"signature"`
}

// ParseManifest reads a manifest and, if cert is not nil, checks its
// signature against the certificate's key.
func ParseManifest(doc []byte, cert *x509.Certificate) (*Manifest, error) {
	var x xmlManifest
	if err := xml.Unmarshal(doc, &x); err != nil {
		return nil, fmt.Errorf("bundle manifest is not valid XML: %w", err)
	}
	if x.Version != ManifestVersion {
		return nil, fmt.Errorf("bundle manifest version %q is not %s", x.Version, ManifestVersion)
	}
	m := &Manifest{Arch: x.Arch, Name: x.Image.Name, User: x.Image.User, Digest: x.Image.Digest, Size: x.Image.Size,
		BundledSize: x.Image.BundledSize, EC2Key: x.Image.EC2Key, UserKey: x.Image.UserKey, EC2IV: x.Image.EC2IV,
		UserIV: x.Image.UserIV, Signature: x.Signature}
	if x.Image.Parts.Count != len(x.Image.Parts.Part) || len(x.Image.Parts.Part) == 0 {
		return nil, fmt.Errorf("bundle manifest lists %d parts but says count=%d", len(x.Image.Parts.Part), x.Image.Parts.Count)
	}
	for i, p := range x.Image.Parts.Part {
		if p.Index != i || p.Filename == "" || strings.ContainsAny(p.Filename, "/\\") {
			return nil, fmt.Errorf("bundle manifest part %d (%q) is out of order or has a bad file name", i, p.Filename)
		}
		m.Parts = append(m.Parts, PartRef{Name: p.Filename, SHA1: p.Digest})
	}
	for _, f := range []struct{ name, v string }{{"name", m.Name}, {"digest", m.Digest}, {"ec2_encrypted_key", m.EC2Key},
		{"user_encrypted_key", m.UserKey}, {"ec2_encrypted_iv", m.EC2IV}, {"user_encrypted_iv", m.UserIV}, {"signature", m.Signature}} {
		if f.v == "" {
			return nil, fmt.Errorf("bundle manifest has no %s", f.name)
		}
	}
	if cert != nil {
		if err := m.verify(doc, cert); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// verify checks the signature as ec2-ami-tools do: over the
// machine_configuration and image elements of REXML's re-serialisation of
// the document.
func (m *Manifest) verify(doc []byte, cert *x509.Certificate) error {
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return errors.New("the certificate's key is not RSA")
	}
	sig, err := hex.DecodeString(m.Signature)
	if err != nil {
		return errors.New("bundle manifest signature is not hex")
	}
	form, err := rexmlForm(doc)
	if err != nil {
		return fmt.Errorf("bundle manifest is not valid XML: %w", err)
	}
	data, err := signedBytes(form)
	if err != nil {
		return err
	}
	sum := sha1.Sum(data)
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA1, sum[:], sig); err != nil {
		return errors.New("bundle manifest signature does not match the user's certificate (the manifest was changed or signed with another key)")
	}
	return nil
}

// decryptHex undoes the manifest's key wrapping.
func decryptHex(k *rsa.PrivateKey, s string) ([]byte, error) {
	c, err := hex.DecodeString(s)
	if err != nil {
		return nil, err
	}
	//lint:ignore SA1019 the bundle format wraps the key with RSA PKCS#1 v1.5 (ec2-unbundle: private_decrypt with PKCS1_PADDING); this reads bundles, it is no oracle for anyone
	h, err := rsa.DecryptPKCS1v15(nil, k, c)
	if err != nil {
		return nil, err
	}
	return hex.DecodeString(string(h))
}

// Unbundle checks and decrypts a bundle with key (EC2's or the user's
// private key) and writes the image to w: every part's SHA1, the bundled
// size, the tar stream's SHA1 and the image size are checked. open returns
// a part by its file name.
func Unbundle(ctx context.Context, m *Manifest, key *rsa.PrivateKey, open func(name string) (io.ReadCloser, error), w io.Writer) error {
	aesKey, err := decryptHex(key, m.EC2Key)
	iv, err2 := decryptHex(key, m.EC2IV)
	if err != nil || err2 != nil {
		aesKey, err = decryptHex(key, m.UserKey)
		iv, err2 = decryptHex(key, m.UserIV)
	}
	if err != nil || err2 != nil || len(aesKey) != 16 || len(iv) != aes.BlockSize {
		return errors.New("cannot decrypt the bundle key with this private key (neither EC2's nor the user's)")
	}
	block, _ := aes.NewCipher(aesKey)
	parts := &partsReader{ctx: ctx, m: m, open: open}
	plain := &cbcReader{mode: cipher.NewCBCDecrypter(block, iv), r: parts}
	gz, err := pgzip.NewReader(plain)
	if err != nil {
		return fmt.Errorf("bundle is not gzip after decryption (wrong key?): %w", err)
	}
	sum := sha1.New()
	tee := io.TeeReader(gz, sum)
	tr := tar.NewReader(tee)
	h, err := tr.Next()
	if err != nil {
		return fmt.Errorf("bundle tar: %w", err)
	}
	if h.Name != m.Name || h.Size != m.Size {
		return fmt.Errorf("bundle tar holds %q (%d bytes), the manifest says %q (%d bytes)", h.Name, h.Size, m.Name, m.Size)
	}
	if _, err := io.Copy(w, tr); err != nil {
		return fmt.Errorf("bundle image data: %w", err)
	}
	if _, err := io.Copy(io.Discard, tee); err != nil { // the rest of the tar stream is hashed too
		return fmt.Errorf("bundle tar: %w", err)
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != m.Digest {
		return fmt.Errorf("bundle digest is %s, the manifest says %s", got, m.Digest)
	}
	if parts.total != m.BundledSize {
		return fmt.Errorf("bundle parts hold %d bytes, the manifest says %d", parts.total, m.BundledSize)
	}
	return nil
}

// partsReader concatenates the parts, checking each one's SHA1 when it ends.
type partsReader struct {
	ctx   context.Context
	m     *Manifest
	open  func(string) (io.ReadCloser, error)
	i     int
	cur   io.ReadCloser
	h     *hashWriter
	total int64
}

func (p *partsReader) Read(b []byte) (int, error) {
	for {
		if err := p.ctx.Err(); err != nil {
			return 0, err
		}
		if p.cur == nil {
			if p.i == len(p.m.Parts) {
				return 0, io.EOF
			}
			rc, err := p.open(p.m.Parts[p.i].Name)
			if err != nil {
				return 0, fmt.Errorf("bundle part %s: %w", p.m.Parts[p.i].Name, err)
			}
			p.cur, p.h = rc, &hashWriter{h: sha1.New()}
		}
		n, err := p.cur.Read(b)
		p.h.Write(b[:n])
		p.total += int64(n)
		if err == io.EOF {
			p.cur.Close()
			p.cur = nil
			ref := p.m.Parts[p.i]
			if got := hex.EncodeToString(p.h.h.Sum(nil)); got != ref.SHA1 {
				return n, fmt.Errorf("bundle part %s has SHA1 %s, the manifest says %s (corrupt or truncated part)", ref.Name, got, ref.SHA1)
			}
			p.i++
			err = nil
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
}

// cbcReader decrypts AES-CBC and strips the PKCS#7 padding at the end.
type cbcReader struct {
	mode cipher.BlockMode
	r    io.Reader
	in   []byte // ciphertext not yet decrypted
	out  []byte // plaintext ready
	eof  bool
}

func (c *cbcReader) Read(p []byte) (int, error) {
	for len(c.out) == 0 {
		if c.eof {
			return 0, io.EOF
		}
		buf := make([]byte, 1<<20)
		n, err := io.ReadFull(c.r, buf)
		c.in = append(c.in, buf[:n]...)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			c.eof = true
		} else if err != nil {
			return 0, err
		}
		// Keep the last block back until EOF: it holds the padding.
		keep := aes.BlockSize
		if c.eof {
			keep = 0
			if len(c.in)%aes.BlockSize != 0 || len(c.in) == 0 {
				return 0, errors.New("bundle ciphertext is not a whole number of AES blocks (truncated)")
			}
		}
		full := len(c.in) - len(c.in)%aes.BlockSize - keep
		if full <= 0 {
			continue
		}
		out := make([]byte, full)
		c.mode.CryptBlocks(out, c.in[:full])
		c.in = append([]byte(nil), c.in[full:]...)
		if c.eof {
			pad := int(out[len(out)-1])
			if pad < 1 || pad > aes.BlockSize || !bytes.Equal(out[len(out)-pad:], bytes.Repeat([]byte{byte(pad)}, pad)) {
				return 0, errors.New("bundle padding is wrong (wrong key or corrupt data)")
			}
			out = out[:len(out)-pad]
		}
		c.out = out
	}
	n := copy(p, c.out)
	c.out = c.out[n:]
	return n, nil
}
