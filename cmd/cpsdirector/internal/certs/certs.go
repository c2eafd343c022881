// Package certs is the director's certificate authority, in the formats of
// the original ConPaaS (cpsconf.py, x509cert.py, conpaas.core.https.x509):
// a CA whose subject is CN=CA (the managers' and clients' TLS callbacks
// recognise the CA by that name), a director certificate with
// role=frontend, and client certificates whose subject carries the fields
// ConPaaS reads, UID (userId), serviceLocator (the application id), role
// (user, manager or agent), CN, O and emailAddress. An existing CA made by
// the original cpsconf.py (X.509 v1, RSA, SHA-1, no extensions) is kept and
// used as is, including to verify certificates it signed with SHA-1.
package certs

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
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
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/conpaas/cps/internal/atomicfile"
	"golang.org/x/sys/unix"
)

// lockFile in CERT_DIR serialises Ensure (cps's; the original had none).
const lockFile = ".certs.lock"

// File names inside CERT_DIR, as in the original.
const (
	CACertFile     = "ca_cert.pem"
	CAKeyFile      = "ca_key.pem"
	ServerCertFile = "cert.pem"
	ServerKeyFile  = "key.pem"
)

// Roles in the role attribute.
const (
	RoleUser     = "user"
	RoleManager  = "manager"
	RoleAgent    = "agent"
	RoleFrontend = "frontend" // the director itself
)

// Attribute types of the ConPaaS subject, as OpenSSL names them.
var (
	oidUID            = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1} // "UID" (userId)
	oidServiceLocator = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 7}   // "serviceLocator"
	oidRole           = asn1.ObjectIdentifier{2, 5, 4, 72}                     // "role"
	oidEmail          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}      // "emailAddress"
	oidCN             = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidO              = asn1.ObjectIdentifier{2, 5, 4, 10}
)

// Lifetimes. The original issued client certificates for a year and its CA
// and director certificate for five.
const (
	caLifetime     = 10 * 365 * 24 * time.Hour
	serverLifetime = 5 * 365 * 24 * time.Hour
	clientLifetime = 365 * 24 * time.Hour
	// renewBefore: a server certificate closer than this to expiry is re-issued.
	renewBefore = 30 * 24 * time.Hour
)

// KeyBits is the RSA key size, the original's.
const KeyBits = 2048

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
	CAOriginal     bool // the CA is an X.509 v1 one, as cpsconf.py made them
	ServerIssued   bool
	PreviousServer string // hosts of the replaced server certificate, if any
}

// Ensure loads the CA in dir (creating it on first run) and makes sure the
// server certificate names host in its commonName and SAN, carries
// role=frontend, and is signed by this CA, re-issuing it (with the same CA)
// when not or when it expires soon.
func Ensure(dir, host string, now time.Time) (*Authority, Result, error) {
	var res Result
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, res, fmt.Errorf("create %s: %w", dir, err)
	}
	// One Ensure at a time per CERT_DIR: concurrent `cpsdirector certs`
	// runs each created a CA (printing fingerprints of which only one
	// survived) and could leave cert.pem and key.pem from different runs.
	lock, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, res, fmt.Errorf("lock %s: %w", dir, err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return nil, res, fmt.Errorf("lock %s: %w", dir, err)
	}
	defer unix.Flock(int(lock.Fd()), unix.LOCK_UN)
	a, err := loadCA(dir)
	if errors.Is(err, os.ErrNotExist) {
		a, err = createCA(dir, now)
		res.CACreated = true
	}
	if err != nil {
		return nil, res, err
	}
	res.CAOriginal = a.CA.Version == 1
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, ServerCertFile), filepath.Join(dir, ServerKeyFile))
	if err == nil {
		leaf, _ := x509.ParseCertificate(cert.Certificate[0])
		if leaf != nil && ServerMatches(leaf, host) == nil && a.signed(leaf) == nil && now.Add(renewBefore).Before(leaf.NotAfter) && Fields(leaf).Role == RoleFrontend {
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

// ErrCADamaged means CERT_DIR holds half a CA or one that does not load.
// Ensure must not replace it: a new CA invalidates every user, manager and
// agent certificate the old one signed.
var ErrCADamaged = errors.New("the CA is damaged")

// caDamaged explains a CA that is there but unusable, and what to do.
func caDamaged(dir, what string) error {
	return fmt.Errorf("%w: %s in %s: restore %s and %s from a backup (moving both away makes `cpsdirector certs` create a new CA, and every user, manager and agent certificate of the old one stops working)",
		ErrCADamaged, what, dir, CACertFile, CAKeyFile)
}

// loadCA reads the CA; an error wrapping os.ErrNotExist means there is
// none at all (neither file), the only case Ensure creates one.
func loadCA(dir string) (*Authority, error) {
	certPEM, cerr := os.ReadFile(filepath.Join(dir, CACertFile))
	keyPEM, kerr := os.ReadFile(filepath.Join(dir, CAKeyFile))
	switch {
	case errors.Is(cerr, os.ErrNotExist) && errors.Is(kerr, os.ErrNotExist):
		return nil, cerr
	case errors.Is(cerr, os.ErrNotExist):
		return nil, caDamaged(dir, CAKeyFile+" is there but "+CACertFile+" is missing")
	case errors.Is(kerr, os.ErrNotExist):
		return nil, caDamaged(dir, CACertFile+" is there but "+CAKeyFile+" is missing")
	case cerr != nil:
		return nil, fmt.Errorf("CA certificate: %w", cerr)
	case kerr != nil:
		return nil, fmt.Errorf("CA key: %w", kerr)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, caDamaged(dir, err.Error())
	}
	ca, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, err
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: unsupported key type", filepath.Join(dir, CAKeyFile))
	}
	// A v3 certificate must say it is a CA; a v1 one (cpsconf.py's) cannot
	// say anything and is a CA by being self-signed.
	if ca.Version >= 3 && !ca.IsCA || ca.Version < 3 && !bytes.Equal(ca.RawIssuer, ca.RawSubject) {
		return nil, fmt.Errorf("%s is not a CA certificate", filepath.Join(dir, CACertFile))
	}
	return &Authority{Dir: dir, CA: ca, CAKey: signer, CAPEM: certPEM}, nil
}

// serial returns a random positive serial number whose bits above 64 hold
// gen, the certificate generation of its user (revocation, see Identity).
func serial(gen int64) (*big.Int, error) {
	r, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 63))
	if err != nil {
		return nil, err
	}
	// Bit 64 always set keeps gen 0 apart from the small random serials
	// (1..2048) the original used.
	g := new(big.Int).Lsh(big.NewInt(gen*2+1), 64)
	return g.Or(g, r), nil
}

// Generation is the certificate generation encoded in serial: -1 for a
// certificate issued by the original director (generation 0 of every user
// whose password was never reset through cpsdirector).
func Generation(sn *big.Int) int64 {
	g := new(big.Int).Rsh(sn, 64)
	if g.Sign() == 0 || g.Bit(0) == 0 {
		return -1
	}
	return new(big.Int).Rsh(g, 1).Int64()
}

// keySlots bounds the RSA key generations running at once to the CPUs
// there are: it is CPU work, so more at once only hold more memory and
// slow every request (one /create_nodes of many nodes starts one per node).
var keySlots = make(chan struct{}, runtime.GOMAXPROCS(0))

func newKey() (*rsa.PrivateKey, error) {
	keySlots <- struct{}{}
	defer func() { <-keySlots }()
	return rsa.GenerateKey(rand.Reader, KeyBits)
}

// Name is a ConPaaS certificate subject.
type Name struct {
	UID            string // the user id ("" for the CA and director)
	ServiceLocator string // the application id ("0" for users)
	Role           string
	CN, O, Email   string
}

// checkEmail refuses an emailAddress that is not ASCII: rdn encodes it as
// an IA5String, and a certificate with other bytes there is one Go's TLS
// stack (the director's own) cannot parse, so it would never work.
func (n Name) checkEmail() error {
	for i := 0; i < len(n.Email); i++ {
		if n.Email[i] > 0x7f {
			return fmt.Errorf("e-mail address %q is not ASCII: a certificate's emailAddress cannot carry it", n.Email)
		}
	}
	return nil
}

// rdn builds the subject in the order the original's OpenSSL printed it,
// with OpenSSL's string types (UTF8String, IA5String for emailAddress).
func (n Name) rdn() pkix.Name {
	var rdn pkix.RDNSequence
	add := func(oid asn1.ObjectIdentifier, v string, tag int) {
		if v != "" {
			rdn = append(rdn, pkix.RelativeDistinguishedNameSET{{Type: oid, Value: asn1.RawValue{Tag: tag, Bytes: []byte(v)}}})
		}
	}
	add(oidUID, n.UID, asn1.TagUTF8String)
	add(oidServiceLocator, n.ServiceLocator, asn1.TagUTF8String)
	add(oidO, n.O, asn1.TagUTF8String)
	add(oidEmail, n.Email, asn1.TagIA5String)
	add(oidCN, n.CN, asn1.TagUTF8String)
	add(oidRole, n.Role, asn1.TagUTF8String)
	var pn pkix.Name
	pn.ExtraNames = nil
	for _, set := range rdn {
		pn.ExtraNames = append(pn.ExtraNames, set...)
	}
	return pn
}

// Fields reads the ConPaaS subject of c.
func Fields(c *x509.Certificate) Name {
	var n Name
	for _, a := range c.Subject.Names {
		v, _ := a.Value.(string)
		switch {
		case a.Type.Equal(oidUID):
			n.UID = v
		case a.Type.Equal(oidServiceLocator):
			n.ServiceLocator = v
		case a.Type.Equal(oidRole):
			n.Role = v
		case a.Type.Equal(oidEmail):
			n.Email = v
		case a.Type.Equal(oidCN):
			n.CN = v
		case a.Type.Equal(oidO):
			n.O = v
		}
	}
	return n
}

func createCA(dir string, now time.Time) (*Authority, error) {
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	sn, err := serial(0)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               Name{CN: "CA", Email: "info@conpaas.eu", O: "ConPaaS"}.rdn(),
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	ca, _ := x509.ParseCertificate(der)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	// Key first: a crash in between leaves no CA certificate without key.
	if err := atomicfile.WriteFile(filepath.Join(dir, CAKeyFile), KeyPEM(key), 0o600); err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, CACertFile), certPEM, 0o644); err != nil {
		return nil, err
	}
	return &Authority{Dir: dir, CA: ca, CAKey: key, CAPEM: certPEM}, nil
}

// KeyPEM is the PKCS#1 PEM of key ("RSA PRIVATE KEY", what the original's
// pyOpenSSL wrote and every OpenSSL reads).
func KeyPEM(key *rsa.PrivateKey) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
}

func (a *Authority) issueServer(host string, now time.Time) error {
	key, err := newKey()
	if err != nil {
		return err
	}
	sn, err := serial(0)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      Name{CN: host, Email: "info@conpaas.eu", O: "ConPaaS", Role: RoleFrontend}.rdn(),
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(serverLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		// The director presents it as a client too, to managers and agents.
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
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
	if err := atomicfile.WriteFile(filepath.Join(a.Dir, ServerKeyFile), KeyPEM(key), 0o600); err != nil {
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

// ServerMatches checks the ConPaaS rule: commonName equals host (cpscheck.py
// compared them), and the SAN (which TLS clients check) contains it.
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

// Bundle is a key, its certificate and the CA certificate, PEM encoded:
// the three files of the original's certs.zip and contexts.
type Bundle struct {
	Cert, Key, CACert []byte
}

// Issue makes a key pair and a certificate for n (getcerts, and the
// manager and agent certificates of the contexts), with generation gen in
// its serial.
func (a *Authority) Issue(n Name, gen int64, now time.Time) (Bundle, error) {
	if err := n.checkEmail(); err != nil {
		return Bundle{}, err
	}
	key, err := newKey()
	if err != nil {
		return Bundle{}, err
	}
	c, err := a.sign(key.Public(), n.rdn(), gen, now)
	if err != nil {
		return Bundle{}, err
	}
	return Bundle{Cert: c, Key: KeyPEM(key), CACert: a.CAPEM}, nil
}

// sign issues a client certificate; like the original's, valid from now
// for a year, with no extensions limiting its use (managers and agents
// are TLS servers and clients with the same certificate).
func (a *Authority) sign(pub crypto.PublicKey, subject pkix.Name, gen int64, now time.Time) ([]byte, error) {
	sn, err := serial(gen)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      subject,
		NotBefore:    now.Add(-5 * time.Minute), // VMs' clocks lag a little
		NotAfter:     now.Add(clientLifetime),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.CA, pub, a.CAKey)
	if err != nil {
		return nil, fmt.Errorf("issue certificate: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// SignCSR signs a certificate request (/ca/get_cert.php) with the subject
// the request asks for, which check must accept first.
func (a *Authority) SignCSR(csrPEM []byte, check func(Name) error, now time.Time) ([]byte, error) {
	b, _ := pem.Decode(csrPEM)
	if b == nil || !strings.Contains(b.Type, "CERTIFICATE REQUEST") {
		return nil, errors.New("csr is not a PEM CERTIFICATE REQUEST")
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse csr: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		// pyOpenSSL's managers sign requests with SHA-1, which Go's
		// CheckSignature refuses; verify those by hand.
		if !(csr.SignatureAlgorithm == x509.SHA1WithRSA && checkSHA1(csr.PublicKey, csr.RawTBSCertificateRequest, csr.Signature) == nil) {
			return nil, fmt.Errorf("csr signature: %w", err)
		}
	}
	var n Name
	for _, at := range csr.Subject.Names {
		v, _ := at.Value.(string)
		switch {
		case at.Type.Equal(oidUID):
			n.UID = v
		case at.Type.Equal(oidServiceLocator):
			n.ServiceLocator = v
		case at.Type.Equal(oidRole):
			n.Role = v
		case at.Type.Equal(oidEmail):
			n.Email = v
		case at.Type.Equal(oidCN):
			n.CN = v
		case at.Type.Equal(oidO):
			n.O = v
		default:
			return nil, fmt.Errorf("csr subject has an attribute %v a ConPaaS certificate does not carry", at.Type)
		}
	}
	if err := check(n); err != nil {
		return nil, err
	}
	if err := n.checkEmail(); err != nil {
		return nil, err
	}
	return a.sign(csr.PublicKey, n.rdn(), 0, now)
}

// Identity is a verified client certificate.
type Identity struct {
	Name
	Serial *big.Int
	Leaf   *x509.Certificate
}

// ErrNoCert means the request carries no client certificate.
var ErrNoCert = errors.New("no client certificate")

// Verify checks a client certificate chain presented in a TLS handshake:
// the first certificate must be signed by the CA (SHA-1 signatures of an
// original CA included) and be valid now.
func (a *Authority) Verify(raw [][]byte, now time.Time) (*Identity, error) {
	if len(raw) == 0 {
		return nil, ErrNoCert
	}
	leaf, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	if err := a.signed(leaf); err != nil {
		return nil, err
	}
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("client certificate is valid from %s to %s", leaf.NotBefore.Format(time.RFC3339), leaf.NotAfter.Format(time.RFC3339))
	}
	return &Identity{Name: Fields(leaf), Serial: leaf.SerialNumber, Leaf: leaf}, nil
}

// signed checks that c was issued by the CA.
func (a *Authority) signed(c *x509.Certificate) error {
	if !bytes.Equal(c.RawIssuer, a.CA.RawSubject) {
		return errors.New("certificate was not issued by this director's CA")
	}
	if err := a.CA.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature); err != nil {
		return fmt.Errorf("certificate signature: %w", err)
	}
	return nil
}

func checkSHA1(pub any, signed, sig []byte) error {
	k, ok := pub.(*rsa.PublicKey)
	if !ok {
		return errors.New("not an RSA key")
	}
	h := crypto.SHA1.New()
	h.Write(signed)
	return rsa.VerifyPKCS1v15(k, crypto.SHA1, h.Sum(nil), sig)
}

// ServerTLS is the listener's configuration: TLS 1.2 or newer, the server
// certificate, and client certificates requested (the original's Apache
// had SSLVerifyClient optional): one that is sent must verify against the
// CA or the handshake fails; password routes work without one.
func (a *Authority) ServerTLS() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{a.Server},
		ClientAuth:   tls.RequestClientCert,
		// The acceptable-CA list lets clients pick the right certificate.
		ClientCAs: a.Pool(),
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return nil
			}
			_, err := a.Verify(raw, time.Now())
			return err
		},
	}
}

// ClientTLS is how the director calls managers and agents: with its own
// certificate (role=frontend, which they accept), trusting only peers whose
// certificate the CA signed with role manager or agent (the original's
// _conpaas_callback_director). Their certificates name no host.
func (a *Authority) ClientTLS() *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		Certificates:       []tls.Certificate{a.Server},
		InsecureSkipVerify: true, // replaced by VerifyPeerCertificate
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			id, err := a.Verify(raw, time.Now())
			if err != nil {
				return err
			}
			if id.Role != RoleManager && id.Role != RoleAgent {
				return fmt.Errorf("peer certificate has role %q, want manager or agent", id.Role)
			}
			return nil
		},
	}
}

// ParseUID returns the numeric UID of an identity.
func (n Name) ParseUID() (int64, error) {
	return strconv.ParseInt(n.UID, 10, 64)
}
