// Package bundletest makes throwaway RSA keys and self-signed certificates
// for tests of EC2 bundles: one pair plays the user, one plays EC2.
package bundletest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Pair is a key with its self-signed certificate and their PEM files.
type Pair struct {
	Key      *rsa.PrivateKey
	Cert     *x509.Certificate
	KeyFile  string // PKCS#1 "RSA PRIVATE KEY", as the old AWS X.509 downloads were
	CertFile string
}

// NewPair makes a 2048-bit pair named cn with its files in a temp dir.
func NewPair(t testing.TB, cn string) Pair {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	dir := t.TempDir()
	p := Pair{Key: k, Cert: c, KeyFile: filepath.Join(dir, "pk-"+cn+".pem"), CertFile: filepath.Join(dir, "cert-"+cn+".pem")}
	if err := os.WriteFile(p.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
