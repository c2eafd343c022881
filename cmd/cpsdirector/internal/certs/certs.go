// Package certs is the director's small certificate authority (the seeds'
// cpsconf.py): a CA, the server certificate for the host of DIRECTOR_URL,
// and client certificates for users (and managers) that carry their role and
// id, so the API can authenticate a request from its TLS handshake alone.
package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/conpaas/cps/internal/atomicfile"
)

// File names inside CERT_DIR, as in the original cpsdirector.
const (
	CACertFile     = "ca_cert.pem"
	CAKeyFile      = "ca_key.pem"
	ServerCertFile = "cert.pem"
	ServerKeyFile  = "key.pem"
)

// Roles written into the OU of client certificates.
const (
	RoleUser    = "user"
	RoleManager = "manager"
)

// oidUID is the LDAP userid attribute (RFC 4519); it carries the numeric
// id of the user (or service, for managers).
var oidUID = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}

// Lifetimes.
const (
	caLifetime     = 10 * 365 * 24 * time.Hour
	serverLifetime = 2 * 365 * 24 * time.Hour
	clientLifetime = 365 * 24 * time.Hour
	// renewBefore: a server certificate closer than this to expiry is re-issued.
	renewBefore = 30 * 24 * time.Hour
)

// Authority is the CA plus the server certificate.
type Authority struct {
	Dir    string
	CA     *x509.Certificate
	CAKey  crypto.Signer
	CAPEM  []byte
	Server tls.Certificate
}

// Result tells what Ensure did.
type Result struct {
	CACreated      bool
	ServerIssued   bool
	PreviousServer string // hosts of the replaced server certificate, if any
}

// Ensure loads the CA in dir (creating it on first run) and makes sure the
// server certificate names host in its commonName and SAN, re-issuing it
// (with the same CA) when the host changed, it expires soon, or it was not
// signed by this CA.
func Ensure(dir, host string, now time.Time) (*Authority, Result, error) {
	var res Result
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, res, fmt.Errorf("create %s: %w", dir, err)
	}
	a, err := loadCA(dir)
	if errors.Is(err, os.ErrNotExist) {
		a, err = createCA(dir, now)
		res.CACreated = true
	}
	if err != nil {
		return nil, res, err
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, ServerCertFile), filepath.Join(dir, ServerKeyFile))
	if err == nil {
		leaf, _ := x509.ParseCertificate(cert.Certificate[0])
		if leaf != nil && ServerMatches(leaf, host) == nil && leaf.CheckSignatureFrom(a.CA) == nil && now.Add(renewBefore).Before(leaf.NotAfter) {
			cert.Leaf = leaf
			a.Server = cert
			return a, res, nil
		}
		if leaf != nil {
			res.PreviousServer = strings.Join(certHosts(leaf), ",")
		}
	}
	if err := a.issueServer(host, now); err != nil {
		return nil, res, err
	}
	res.ServerIssued = true
	return a, res, nil
}

// Load reads the CA and server certificate written by Ensure.
func Load(dir string) (*Authority, error) {
	a, err := loadCA(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no CA in %s: run `cpsdirector certs` first", dir)
		}
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, ServerCertFile), filepath.Join(dir, ServerKeyFile))
	if err != nil {
		return nil, fmt.Errorf("server certificate in %s: %w (run `cpsdirector certs`)", dir, err)
	}
	cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, err
	}
	a.Server = cert
	return a, nil
}

func loadCA(dir string) (*Authority, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("CA certificate without key: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA in %s: %w", dir, err)
	}
	ca, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, err
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok || !ca.IsCA {
		return nil, fmt.Errorf("%s is not a CA certificate", filepath.Join(dir, CACertFile))
	}
	return &Authority{Dir: dir, CA: ca, CAKey: signer, CAPEM: certPEM}, nil
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func createCA(dir string, now time.Time) (*Authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: "ConPaaS director CA", Organization: []string{"ConPaaS"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	ca, _ := x509.ParseCertificate(der)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	// Key first: a crash in between leaves no CA certificate without key.
	if err := writeKey(filepath.Join(dir, CAKeyFile), key); err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, CACertFile), certPEM, 0o644); err != nil {
		return nil, err
	}
	return &Authority{Dir: dir, CA: ca, CAKey: key, CAPEM: certPEM}, nil
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

func (a *Authority) issueServer(host string, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	sn, err := serial()
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: host, Organization: []string{"ConPaaS"}, OrganizationalUnit: []string{"director"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(serverLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.CA, key.Public(), a.CAKey)
	if err != nil {
		return fmt.Errorf("issue server certificate: %w", err)
	}
	if err := writeKey(filepath.Join(a.Dir, ServerKeyFile), key); err != nil {
		return err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := atomicfile.WriteFile(filepath.Join(a.Dir, ServerCertFile), certPEM, 0o644); err != nil {
		return err
	}
	leaf, _ := x509.ParseCertificate(der)
	a.Server = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	return nil
}

func certHosts(c *x509.Certificate) []string {
	h := append([]string{}, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		h = append(h, ip.String())
	}
	if len(h) == 0 {
		h = []string{c.Subject.CommonName}
	}
	return h
}

// ServerMatches checks the ConPaaS rule: commonName equals host, and the
// SAN (which TLS clients actually check) contains it.
func ServerMatches(c *x509.Certificate, host string) error {
	if !strings.EqualFold(c.Subject.CommonName, host) {
		return fmt.Errorf("certificate commonName is %q but DIRECTOR_URL's host is %q", c.Subject.CommonName, host)
	}
	if err := c.VerifyHostname(host); err != nil {
		return fmt.Errorf("certificate SAN (%s) does not contain DIRECTOR_URL's host %q", strings.Join(certHosts(c), ", "), host)
	}
	return nil
}

// Pool returns a pool holding only the CA.
func (a *Authority) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(a.CA)
	return p
}

// ServerTLS is the listener's configuration: TLS 1.2 or newer, the server
// certificate, and client certificates verified against the CA when sent
// (password endpoints work without one; the API handlers require it).
func (a *Authority) ServerTLS() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{a.Server},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    a.Pool(),
	}
}

// Identity is who a client certificate belongs to.
type Identity struct {
	Role string
	ID   int64
	Name string
}

// IssueClient signs a client certificate for pub (from the caller's CSR, so
// the private key never leaves the client).
func (a *Authority) IssueClient(pub crypto.PublicKey, id Identity, now time.Time) ([]byte, error) {
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject: pkix.Name{
			CommonName:         id.Name,
			Organization:       []string{"ConPaaS"},
			OrganizationalUnit: []string{id.Role},
			ExtraNames:         []pkix.AttributeTypeAndValue{{Type: oidUID, Value: strconv.FormatInt(id.ID, 10)}},
		},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(clientLifetime),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.CA, pub, a.CAKey)
	if err != nil {
		return nil, fmt.Errorf("issue client certificate: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// ParseCSR decodes and checks a PEM certificate request.
func ParseCSR(p []byte) (*x509.CertificateRequest, error) {
	b, _ := pem.Decode(p)
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("csr is not a PEM CERTIFICATE REQUEST")
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse csr: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("csr signature: %w", err)
	}
	return csr, nil
}

// IdentityOf reads role and id from a verified client certificate.
func IdentityOf(c *x509.Certificate) (Identity, error) {
	id := Identity{Name: c.Subject.CommonName}
	if len(c.Subject.OrganizationalUnit) != 1 {
		return id, errors.New("client certificate has no role")
	}
	id.Role = c.Subject.OrganizationalUnit[0]
	for _, n := range c.Subject.Names {
		if n.Type.Equal(oidUID) {
			s, ok := n.Value.(string)
			if !ok {
				break
			}
			v, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return id, fmt.Errorf("client certificate uid %q: %w", s, err)
			}
			id.ID = v
			return id, nil
		}
	}
	return id, errors.New("client certificate has no uid")
}
