// Package client talks to the director's API the way cps-tools did: it
// reads ~/.conpaas/cps-tools.conf (director_url, username, optional
// password), keeps the user's certificate, key and the director's CA in the
// same directory, and authenticates every call with the certificate.
package client

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/conpaas/cps/cmd/cpsdirector/internal/config"
	"github.com/conpaas/cps/internal/atomicfile"
)

// Conf is cps-tools.conf.
type Conf struct {
	Path        string
	DirectorURL string
	Username    string
	Password    string
	Dir         string // where cert.pem, key.pem, ca_cert.pem live
}

// DefaultConfPath is ~/.conpaas/cps-tools.conf.
func DefaultConfPath() string {
	h, _ := os.UserHomeDir()
	return filepath.Join(h, ".conpaas", "cps-tools.conf")
}

// LoadConf reads the [conpaas] section of path.
func LoadConf(path string) (*Conf, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s does not exist: create it with a [conpaas] section setting director_url and username", path)
	}
	if err != nil {
		return nil, err
	}
	ini, err := config.ReadSimple(path, data)
	if err != nil {
		return nil, err
	}
	s := ini["conpaas"]
	if s == nil {
		return nil, fmt.Errorf("%s: no [conpaas] section", path)
	}
	c := &Conf{Path: path, DirectorURL: strings.TrimRight(s["DIRECTOR_URL"], "/"), Username: s["USERNAME"], Password: s["PASSWORD"], Dir: s["CONF_DIR"]}
	if c.Dir == "" {
		c.Dir = filepath.Dir(path)
	}
	if strings.HasPrefix(c.Dir, "~/") {
		h, _ := os.UserHomeDir()
		c.Dir = filepath.Join(h, c.Dir[2:])
	}
	u, err := url.Parse(c.DirectorURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("%s: director_url %q must be https://HOST[:PORT]", path, c.DirectorURL)
	}
	if c.Username == "" {
		return nil, fmt.Errorf("%s: username is not set", path)
	}
	return c, nil
}

func (c *Conf) file(name string) string { return filepath.Join(c.Dir, name) }

// Client is an authenticated API client.
type Client struct {
	Conf *Conf
	HTTP *http.Client
}

// New loads the certificate obtained by GetCertificate.
func New(c *Conf) (*Client, error) {
	pool, err := loadPool(c.file("ca_cert.pem"))
	if err != nil {
		return nil, fmt.Errorf("%w: run `cpsdirector client user get_certificate` first", err)
	}
	cert, err := tls.LoadX509KeyPair(c.file("cert.pem"), c.file("key.pem"))
	if err != nil {
		return nil, fmt.Errorf("no client certificate in %s (%v): run `cpsdirector client user get_certificate` first", c.Dir, err)
	}
	return &Client{Conf: c, HTTP: httpClient(pool, &cert)}, nil
}

// HTTPClient returns a client for bench and tests that keeps connections
// alive across many requests.
func httpClient(pool *x509.CertPool, cert *tls.Certificate) *http.Client {
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{
		TLSClientConfig: tc, MaxIdleConnsPerHost: 64, ForceAttemptHTTP2: false, IdleConnTimeout: 90 * time.Second,
	}}
}

// HTTPClientFor is httpClient for c's files (used by the bench).
func HTTPClientFor(c *Conf) (*http.Client, error) {
	cl, err := New(c)
	if err != nil {
		return nil, err
	}
	return cl.HTTP, nil
}

func loadPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("director CA %s: %w", path, err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return p, nil
}

// APIError is a non-2xx answer.
type APIError struct {
	Status int
	Msg    string
}

func (e *APIError) Error() string { return fmt.Sprintf("director: %s (HTTP %d)", e.Msg, e.Status) }

// Do performs one JSON call.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	return do(ctx, c.HTTP, c.Conf.DirectorURL, method, path, in, out)
}

func do(ctx context.Context, hc *http.Client, base, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("no ConPaaS director at %s: %w", base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct{ Error string }
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
		}
		return &APIError{Status: resp.StatusCode, Msg: e.Error}
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("decode %s %s: %w", method, path, err)
		}
	}
	return nil
}

// Fingerprint is the SHA-256 of a certificate's DER, as `cpsdirector
// certs` prints it.
func Fingerprint(c *x509.Certificate) string {
	s := sha256.Sum256(c.Raw)
	return hex.EncodeToString(s[:])
}

// FetchCA downloads the director's CA on first contact. The TLS session is
// only trusted if the server certificate chains to that CA and the CA's
// fingerprint equals want (the value `cpsdirector certs` printed), or if
// confirm (an interactive prompt) accepts it.
func FetchCA(ctx context.Context, c *Conf, want string, confirm func(fp string) bool) ([]byte, error) {
	var seen []*x509.Certificate
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // verified below against the fetched CA
		VerifyConnection: func(cs tls.ConnectionState) error {
			seen = cs.PeerCertificates
			return nil
		},
	}
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: tc}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.DirectorURL+"/ca_cert.pem", nil)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("no ConPaaS director at %s: %w", c.DirectorURL, err)
	}
	defer resp.Body.Close()
	caPEM, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil || resp.StatusCode != 200 {
		return nil, fmt.Errorf("download %s/ca_cert.pem: HTTP %d %v", c.DirectorURL, resp.StatusCode, err)
	}
	b, _ := pem.Decode(caPEM)
	if b == nil {
		return nil, errors.New("director's ca_cert.pem is not PEM")
	}
	ca, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	u, _ := url.Parse(c.DirectorURL)
	if len(seen) == 0 {
		return nil, errors.New("no server certificate seen")
	}
	if _, err := seen[0].Verify(x509.VerifyOptions{Roots: pool, DNSName: u.Hostname()}); err != nil {
		return nil, fmt.Errorf("the director's certificate does not match its own CA: %w", err)
	}
	fp := Fingerprint(ca)
	switch {
	case want != "":
		if !strings.EqualFold(strings.ReplaceAll(want, ":", ""), fp) {
			return nil, fmt.Errorf("director CA fingerprint is %s, not the expected %s: refusing (possible interception)", fp, want)
		}
	case confirm == nil || !confirm(fp):
		return nil, fmt.Errorf("director CA %s not trusted: pass --trust-ca %s after checking it against `cpsdirector certs` output", fp, fp)
	}
	return caPEM, nil
}

// GetCertificate logs in with the password and stores a fresh key, the
// certificate signed by the director and its CA in c.Dir.
func GetCertificate(ctx context.Context, c *Conf, password string, caPEM []byte) error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return errors.New("bad CA PEM")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: c.Username}}, key)
	if err != nil {
		return err
	}
	var resp struct {
		Cert   string `json:"cert"`
		CACert string `json:"ca_cert"`
	}
	err = do(ctx, httpClient(pool, nil), c.DirectorURL, http.MethodPost, "/get_certificate", map[string]string{
		"username": c.Username, "password": password,
		"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})),
	}, &resp)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return err
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	if err := atomicfile.WriteFile(c.file("key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(c.file("cert.pem"), []byte(resp.Cert), 0o644); err != nil {
		return err
	}
	return atomicfile.WriteFile(c.file("ca_cert.pem"), caPEM, 0o644)
}
