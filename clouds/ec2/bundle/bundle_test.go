package bundle

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/conpaas/cps/clouds/ec2/bundle/bundletest"
	"github.com/conpaas/cps/internal/testutil"
)

type result struct {
	manifest []byte
	parts    map[string][]byte
	order    []string
}

func makeBundle(t *testing.T, image []byte, user, ec2 bundletest.Pair, partSize int) result {
	t.Helper()
	res := result{parts: map[string][]byte{}}
	opt := Options{Name: "conpaas.img", Arch: "x86_64", Account: "123456789012", PartSize: partSize,
		Keys: Keys{UserCert: user.Cert, UserKey: user.Key, EC2Cert: ec2.Cert}}
	m, err := Write(context.Background(), bytes.NewReader(image), int64(len(image)), opt, func(p Part) error {
		res.parts[p.Name] = p.Data
		res.order = append(res.order, p.Name)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	res.manifest = m
	return res
}

func testImage(size int) []byte {
	img := make([]byte, size)
	for off := 0; off < size; off += size / 5 {
		rand.Read(img[off:min(size, off+size/20)])
	}
	return img
}

// TestRoundTrip bundles an image and unbundles it with EC2's key and with
// the user's key, and checks the manifest's structure.
func TestRoundTrip(t *testing.T) {
	user, ec2 := bundletest.NewPair(t, "user"), bundletest.NewPair(t, "ec2")
	img := testImage(3<<20 + 4096)
	res := makeBundle(t, img, user, ec2, 256<<10)
	m, err := ParseManifest(res.manifest, user.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Parts) < 2 || m.Parts[0].Name != "conpaas.img.part.0" || m.Size != int64(len(img)) || m.User != "123456789012" || m.Arch != "x86_64" {
		t.Fatalf("manifest: %+v", m)
	}
	open := func(name string) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(res.parts[name])), nil }
	for _, k := range []bundletest.Pair{ec2, user} {
		var out bytes.Buffer
		if err := Unbundle(context.Background(), m, k.Key, open, &out); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), img) {
			t.Fatal("unbundled image differs")
		}
	}
}

// TestTamper checks that every kind of damage is refused with a clear error.
func TestTamper(t *testing.T) {
	user, ec2, other := bundletest.NewPair(t, "user"), bundletest.NewPair(t, "ec2"), bundletest.NewPair(t, "other")
	img := testImage(1 << 20)
	res := makeBundle(t, img, user, ec2, 128<<10)
	cases := []struct {
		name    string
		doc     func(string) string
		part    func(map[string][]byte)
		key     bundletest.Pair
		cert    bundletest.Pair
		wantErr string
	}{
		{name: "signature by another key", cert: other, wantErr: "signature does not match"},
		{name: "manifest changed", doc: func(s string) string { return strings.Replace(s, "<user>123456789012", "<user>999999999999", 1) }, cert: user, wantErr: "signature does not match"},
		{name: "wrong private key", key: other, cert: user, wantErr: "cannot decrypt the bundle key"},
		{name: "corrupt part", part: func(p map[string][]byte) { p["conpaas.img.part.1"][7] ^= 1 }, key: ec2, cert: user, wantErr: "part conpaas.img.part.1 has SHA1"},
		{name: "truncated part", part: func(p map[string][]byte) {
			last := "conpaas.img.part.0"
			p[last] = p[last][:len(p[last])-1]
		}, key: ec2, cert: user, wantErr: "has SHA1"},
		{name: "missing part", part: func(p map[string][]byte) { delete(p, "conpaas.img.part.2") }, key: ec2, cert: user, wantErr: "bundle part conpaas.img.part.2: file does not exist"},
		{name: "not xml", doc: func(string) string { return "<manifest" }, cert: user, wantErr: "not valid XML"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			doc := string(res.manifest)
			if tc.doc != nil {
				doc = tc.doc(doc)
			}
			parts := map[string][]byte{}
			for k, v := range res.parts {
				parts[k] = append([]byte(nil), v...)
			}
			if tc.part != nil {
				tc.part(parts)
			}
			m, err := ParseManifest([]byte(doc), tc.cert.Cert)
			if err == nil {
				err = Unbundle(context.Background(), m, tc.key.Key, func(name string) (io.ReadCloser, error) {
					b, ok := parts[name]
					if !ok {
						return nil, os.ErrNotExist
					}
					return io.NopCloser(bytes.NewReader(b)), nil
				}, io.Discard)
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestOpenSSLCompatible unbundles with the tools ec2-unbundle is built on:
// openssl decrypts the key (RSA PKCS#1 v1.5) and the data (enc
// -aes-128-cbc), gzip and tar unpack it, and openssl verifies the manifest
// signature (RSA-SHA1). So the bundle is what ec2-bundle-image makes.
func TestOpenSSLCompatible(t *testing.T) {
	openssl := testutil.RequireTool(t, "openssl")
	testutil.RequireTool(t, "tar")
	user, ec2 := bundletest.NewPair(t, "user"), bundletest.NewPair(t, "ec2")
	img := testImage(2<<20 + 512)
	res := makeBundle(t, img, user, ec2, 300<<10)
	m, err := ParseManifest(res.manifest, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	run := func(stdin []byte, name string, args ...string) []byte {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Stdin = bytes.NewReader(stdin)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, stderr.String())
		}
		return out
	}
	unwrap := func(h string) string {
		c, _ := hex.DecodeString(h)
		return string(run(c, openssl, "pkeyutl", "-decrypt", "-inkey", ec2.KeyFile, "-pkeyopt", "rsa_padding_mode:pkcs1"))
	}
	key, iv := unwrap(m.EC2Key), unwrap(m.EC2IV)
	var enc []byte
	for _, n := range res.order {
		enc = append(enc, res.parts[n]...)
	}
	tgz := run(enc, openssl, "enc", "-d", "-aes-128-cbc", "-K", key, "-iv", iv)
	out := run(tgz, "tar", "-xzO", "conpaas.img")
	if !bytes.Equal(out, img) {
		t.Fatal("openssl | tar gives another image")
	}

	s := string(res.manifest)
	signed := s[strings.Index(s, "<machine_configuration>") : strings.Index(s, "</image>")+len("</image>")]
	sig, _ := hex.DecodeString(m.Signature)
	data, sigFile, pub := filepath.Join(dir, "data"), filepath.Join(dir, "sig"), filepath.Join(dir, "pub.pem")
	os.WriteFile(data, []byte(signed), 0o644)
	os.WriteFile(sigFile, sig, 0o644)
	os.WriteFile(pub, run(nil, openssl, "x509", "-in", user.CertFile, "-pubkey", "-noout"), 0o644)
	if v := run(nil, openssl, "dgst", "-sha1", "-verify", pub, "-signature", sigFile, data); !bytes.Contains(v, []byte("Verified OK")) {
		t.Fatalf("openssl dgst: %s", v)
	}
	if _, err := exec.LookPath("xmllint"); err == nil {
		run(res.manifest, "xmllint", "--noout", "-")
	}
}

// TestWriteErrors checks bad input is refused before anything is emitted.
func TestWriteErrors(t *testing.T) {
	user, ec2, other := bundletest.NewPair(t, "user"), bundletest.NewPair(t, "ec2"), bundletest.NewPair(t, "other")
	cases := []struct {
		name string
		opt  Options
		size int64
		want string
	}{
		{"no keys", Options{Name: "a.img"}, 10, "needs the user's certificate"},
		{"key of another cert", Options{Name: "a.img", Keys: Keys{UserCert: user.Cert, UserKey: other.Key, EC2Cert: ec2.Cert}}, 10, "does not belong"},
		{"path as name", Options{Name: "x/a.img", Keys: Keys{UserCert: user.Cert, UserKey: user.Key, EC2Cert: ec2.Cert}}, 10, "plain file name"},
		{"short image", Options{Name: "a.img", Keys: Keys{UserCert: user.Cert, UserKey: user.Key, EC2Cert: ec2.Cert}}, 20, "truncated"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Write(context.Background(), bytes.NewReader(make([]byte, 10)), tc.size, tc.opt, func(Part) error { return nil })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestLoadKeys(t *testing.T) {
	user, ec2 := bundletest.NewPair(t, "user"), bundletest.NewPair(t, "ec2")
	k, err := LoadKeys(user.CertFile, user.KeyFile, ec2.CertFile)
	if err != nil || !k.UserKey.Equal(user.Key) {
		t.Fatalf("LoadKeys: %v", err)
	}
	for _, tc := range []struct{ cert, key, ec2, want string }{
		{"", user.KeyFile, ec2.CertFile, "no user certificate"},
		{user.KeyFile, user.KeyFile, ec2.CertFile, "not an X.509 certificate"},
		{user.CertFile, user.CertFile, ec2.CertFile, "neither a PKCS#1 nor a PKCS#8"},
		{user.CertFile, user.KeyFile, "/nonexistent/cert-ec2.pem", "read the EC2 certificate"},
	} {
		if _, err := LoadKeys(tc.cert, tc.key, tc.ec2); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("LoadKeys(%q, %q, %q) = %v, want %q", tc.cert, tc.key, tc.ec2, err, tc.want)
		}
	}
}
