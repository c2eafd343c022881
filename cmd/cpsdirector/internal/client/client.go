// Package client talks to a ConPaaS director and its application managers
// the way cps-tools did (cps_tools/base.py): it reads cps-tools.conf
// (/etc/cps-tools/cps-tools.conf, then ~/.conpaas/cps-tools.conf, section
// [cps-tools]: director_url, username, password, debug), keeps the user's
// certificate, key and the director's CA in ~/.conpaas, sends form-encoded
// calls with the user name (and the password where no certificate is
// used), and calls managers with JSON-RPC.
package client

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/conpaas/cps/cmd/cpsdirector/internal/certs"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/config"
	"github.com/conpaas/cps/internal/atomicfile"
)

// Conf is what cps-tools.conf and the command line say.
type Conf struct {
	Files       []string // configuration files read
	DirectorURL string
	Username    string
	Password    string
	Debug       bool
	// Dir holds cert.pem, key.pem and ca_cert.pem (~/.conpaas).
	Dir string
	// ManagerPort is where managers listen (443; tests move it with
	// CPS_MANAGER_PORT).
	ManagerPort int
}

// ConfDir is ~/.conpaas.
func ConfDir() string {
	h, _ := os.UserHomeDir()
	return filepath.Join(h, ".conpaas")
}

// LoadConf reads the configuration files as cps-tools' config() did: file
// if given, else /etc/cps-tools/cps-tools.conf and ~/.conpaas/cps-tools.conf
// (the later wins). Missing files are skipped.
func LoadConf(file string) (*Conf, error) {
	c := &Conf{Dir: ConfDir(), ManagerPort: 443}
	files := []string{"/etc/cps-tools/cps-tools.conf", filepath.Join(c.Dir, "cps-tools.conf")}
	if file != "" {
		if strings.HasPrefix(file, "~/") {
			h, _ := os.UserHomeDir()
			file = filepath.Join(h, file[2:])
		}
		files = []string{file}
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) && file == "" {
			continue
		}
		if err != nil {
			return nil, err
		}
		ini, err := config.ReadSimple(f, data)
		if err != nil {
			return nil, err
		}
		c.Files = append(c.Files, f)
		s := ini["cps-tools"]
		for k, v := range s {
			switch k {
			case "DIRECTOR_URL":
				c.DirectorURL = v
			case "USERNAME":
				c.Username = v
			case "PASSWORD":
				c.Password = v
			case "DEBUG":
				switch strings.ToLower(v) {
				case "true":
					c.Debug = true
				case "false":
					c.Debug = false
				default:
					return nil, fmt.Errorf("%s: option 'debug' in configuration file cps-tools.conf must be 'true' or 'false'", f)
				}
			}
		}
	}
	if p, err := strconv.Atoi(os.Getenv("CPS_MANAGER_PORT")); err == nil {
		c.ManagerPort = p
	}
	return c, nil
}

// NormalizeURL is cps-tools' set_director_url: https and port 5555 unless
// given.
func NormalizeURL(u string) string {
	if u == "" {
		return ""
	}
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		scheme, rest = "https", u
	}
	rest = strings.TrimRight(rest, "/")
	if _, _, err := net.SplitHostPort(rest); err != nil {
		rest += ":5555"
	}
	return scheme + "://" + rest
}

func (c *Conf) file(name string) string { return filepath.Join(c.Dir, name) }

// Client calls the director and managers.
type Client struct {
	Conf *Conf
	// anon trusts the director's CA but presents no certificate; user
	// presents the user's certificate (nil before get_certificate).
	anon, user *http.Client
	pool       *x509.CertPool
	uid        string
	Log        io.Writer // debug output, or nil
}

// New makes a client from conf; the director's CA comes from
// Dir/ca_cert.pem (get_certificate stores it).
func New(conf *Conf) (*Client, error) {
	if conf.DirectorURL == "" {
		return nil, errors.New("Cannot call the ConPaaS director: the director URL address is not specified (--director_url or director_url in cps-tools.conf)")
	}
	if conf.Username == "" {
		return nil, errors.New("Cannot call the ConPaaS director: user name is not specified (--username or username in cps-tools.conf)")
	}
	c := &Client{Conf: conf}
	if b, err := os.ReadFile(conf.file("ca_cert.pem")); err == nil {
		c.pool = x509.NewCertPool()
		if !c.pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("%s holds no certificate", conf.file("ca_cert.pem"))
		}
		c.anon = httpClient(c.pool, nil)
		if pair, err := tls.LoadX509KeyPair(conf.file("cert.pem"), conf.file("key.pem")); err == nil {
			c.user = httpClient(c.pool, &pair)
			if leaf, err := x509.ParseCertificate(pair.Certificate[0]); err == nil {
				c.uid = certs.Fields(leaf).UID
			}
		}
	}
	return c, nil
}

func httpClient(pool *x509.CertPool, cert *tls.Certificate) *http.Client {
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 10 * time.Minute, Transport: &http.Transport{TLSClientConfig: tc, MaxIdleConnsPerHost: 16}}
}

// ErrNoCerts means the user has no certificate yet.
var ErrNoCerts = errors.New("Cannot call the ConPaaS director: user certificates are not present.\nTry to run 'cpsdirector client user get_certificate' first.")

// Director is call_director: form values (username added, password too
// when no certificate is used), POST or GET. A JSON answer is decoded
// (an object with "error" becomes the error); anything else comes back as
// raw bytes.
func (c *Client) Director(ctx context.Context, post bool, method string, form url.Values, useCerts bool) (any, []byte, error) {
	if form == nil {
		form = url.Values{}
	}
	if _, ok := form["username"]; !ok {
		form.Set("username", c.Conf.Username)
	}
	hc := c.user
	if !useCerts {
		if _, ok := form["password"]; !ok {
			form.Set("password", c.Conf.Password)
		}
		hc = c.anon
	}
	if hc == nil {
		if useCerts {
			return nil, nil, ErrNoCerts
		}
		return nil, nil, errors.New("the director's CA is unknown: run 'cpsdirector client user get_certificate' first")
	}
	u := c.Conf.DirectorURL + "/" + method
	var req *http.Request
	var err error
	if post {
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
		if req != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	} else {
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, u+"?"+form.Encode(), nil)
	}
	if err != nil {
		return nil, nil, err
	}
	if c.Log != nil {
		fmt.Fprintf(c.Log, "INFO - Requesting '%s'\n", u)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("Cannot contact the director at URL '%s': %w", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(b))
		var e struct{ Error string }
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		return nil, b, fmt.Errorf("Call to method '%s' on '%s' failed: HTTP status %d: %s", method, u, resp.StatusCode, msg)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, b, nil
	}
	if m, ok := v.(map[string]any); ok {
		if e, ok := m["error"]; ok {
			return nil, b, errors.New(fmt.Sprint(e))
		}
	}
	return v, b, nil
}

// FetchCA downloads the director's CA certificate for the first contact:
// it is trusted if its SHA-256 fingerprint equals want (printed by
// `cpsdirector certs`) or confirm accepts it.
func FetchCA(ctx context.Context, conf *Conf, want string, confirm func(fp string) bool) ([]byte, error) {
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS12, InsecureSkipVerify: true, // checked below against the fingerprint
	}}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, conf.DirectorURL+"/ca_cert.pem", nil)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("No ConPaaS Director at the provided URL: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("No ConPaaS Director at the provided URL: HTTP %d for /ca_cert.pem", resp.StatusCode)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New("the director's /ca_cert.pem is not a certificate")
	}
	ca, err := parsePEM(b)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(ca.Raw)
	fp := hex.EncodeToString(sum[:])
	norm := strings.ToLower(strings.ReplaceAll(want, ":", ""))
	if !(norm != "" && norm == fp) && !confirm(fp) {
		return nil, fmt.Errorf("not trusting the director's CA (SHA-256 %s): pass --trust-ca with the fingerprint `cpsdirector certs` printed", fp)
	}
	// The server must have shown a certificate that CA signed.
	if len(resp.TLS.PeerCertificates) == 0 {
		return nil, errors.New("the director showed no certificate")
	}
	if err := resp.TLS.PeerCertificates[0].CheckSignatureFrom(ca); err != nil {
		return nil, fmt.Errorf("the director's certificate is not signed by the CA it serves: %w", err)
	}
	return b, nil
}

func parsePEM(b []byte) (*x509.Certificate, error) {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, errors.New("no certificate")
		}
		if blk.Type == "CERTIFICATE" {
			return x509.ParseCertificate(blk.Bytes)
		}
	}
}

// GetCertificate is cps-tools' user get_certificate: POST /getcerts with
// the password and unpack the zip into Dir (0600 files, 0700 directory).
func GetCertificate(ctx context.Context, conf *Conf, caPEM []byte) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	c := &Client{Conf: conf, pool: pool, anon: httpClient(pool, nil)}
	_, raw, err := c.Director(ctx, true, "getcerts", nil, false)
	if err != nil {
		return err
	}
	zr, err := zip.NewReader(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		// An {"error": ...} answer decodes as JSON above; anything else is
		// not what a director sends.
		return fmt.Errorf("the director's getcerts answer is not a zip: %w", err)
	}
	if err := os.MkdirAll(conf.Dir, 0o700); err != nil {
		return err
	}
	files := map[string][]byte{}
	for _, f := range zr.File {
		switch f.Name {
		case "cert.pem", "key.pem", "ca_cert.pem":
		default:
			continue // never write names the zip chooses
		}
		rc, err := f.Open()
		if err != nil {
			return err
		}
		files[f.Name], err = io.ReadAll(io.LimitReader(rc, 1<<20))
		rc.Close()
		if err != nil {
			return err
		}
	}
	if len(files) != 3 {
		return errors.New("the director's certificate zip lacks cert.pem, key.pem or ca_cert.pem")
	}
	if _, err := tls.X509KeyPair(files["cert.pem"], files["key.pem"]); err != nil {
		return fmt.Errorf("the director's certificate and key do not match: %w", err)
	}
	for _, n := range []string{"key.pem", "cert.pem", "ca_cert.pem"} {
		if err := atomicfile.WriteFile(conf.file(n), files[n], 0o600); err != nil {
			return err
		}
	}
	return nil
}

// App is an application as /listapp lists it.
type App struct {
	AID     int64   `json:"aid"`
	Name    string  `json:"name"`
	Status  string  `json:"status"`
	Manager *string `json:"manager"`
	Cloud   *string `json:"cloud"`
	VMID    *string `json:"vmid"`
}

// Apps lists the user's applications.
func (c *Client) Apps(ctx context.Context) ([]App, error) {
	_, raw, err := c.Director(ctx, false, "listapp", nil, true)
	if err != nil {
		return nil, err
	}
	var l []App
	if err := json.Unmarshal(raw, &l); err != nil {
		return nil, fmt.Errorf("listapp: %w", err)
	}
	return l, nil
}

// Manager is call_manager: JSON-RPC to the application's manager, whose
// certificate must be a manager one of this user (the original's
// _conpaas_callback_user).
func (c *Client) Manager(ctx context.Context, app App, sid int64, method string, post bool, params map[string]any) (json.RawMessage, error) {
	if app.Manager == nil {
		return nil, fmt.Errorf("Application %d has not started. Try to start it first.", app.AID)
	}
	if c.user == nil {
		return nil, ErrNoCerts
	}
	tc := c.user.Transport.(*http.Transport).TLSClientConfig.Clone()
	tc.InsecureSkipVerify = true // managers' certificates name no host; checked here
	tc.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		leaf, err := x509.ParseCertificate(raw[0])
		if err != nil {
			return err
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: c.pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return err
		}
		f := certs.Fields(leaf)
		if f.Role != "frontend" && (f.Role != "manager" || f.UID != c.uid) {
			return fmt.Errorf("the manager's certificate is not one of yours (role %q, UID %q)", f.Role, f.UID)
		}
		return nil
	}
	hc := &http.Client{Timeout: 10 * time.Minute, Transport: &http.Transport{TLSClientConfig: tc}}
	base := "https://" + net.JoinHostPort(*app.Manager, strconv.Itoa(c.Conf.ManagerPort)) + "/"
	var req *http.Request
	var err error
	if post {
		if params == nil {
			params = map[string]any{}
		}
		b, _ := json.Marshal(map[string]any{"service_id": sid, "method": method, "params": params, "id": "1"})
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, base, bytes.NewReader(b))
	} else {
		q := url.Values{"service_id": {strconv.FormatInt(sid, 10)}, "method": {method}, "id": {"1"}}
		if params != nil {
			b, _ := json.Marshal(params)
			q.Set("params", string(b))
		}
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, base+"?"+q.Encode(), nil)
	}
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("Cannot contact the manager at URL '%s': %w", base, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("Call to method '%s' on '%s' failed: HTTP status %d", method, *app.Manager, resp.StatusCode)
	}
	var ans map[string]json.RawMessage
	if json.Unmarshal(b, &ans) != nil {
		return b, nil
	}
	if e, ok := ans["error"]; ok && string(e) != "null" {
		var msg string
		if json.Unmarshal(e, &msg) != nil {
			msg = string(e)
		}
		return nil, errors.New(msg)
	}
	if r, ok := ans["result"]; ok {
		return r, nil
	}
	return b, nil
}
