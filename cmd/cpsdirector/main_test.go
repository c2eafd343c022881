package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/conpaas/cps/test/novafake"
)

// bin is the cpsdirector binary built once for all tests: the tests drive
// the real program, flags, exit codes and all.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cpsdirector-test-")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "cpsdirector")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// run runs the binary and returns stdout, stderr and the exit code.
func run(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// env is one director under test with its clouds.
type env struct {
	t       *testing.T
	dir     string
	cfg     string
	url     string
	port    int
	nova    *novafake.Server
	ec2     *ec2Env // nil until the EC2 fake is wired in
	caPool  *x509.CertPool
	cmd     *exec.Cmd
	stderr  *bytes.Buffer
	catalog string
}

const catalogueJSON = `{
  "schema_version": 1,
  "artifacts": [
    {"name": "conpaas", "version": "2.1.0", "kind": "raw", "arch": "amd64", "file": "conpaas.img", "size": 1, "md5": "c6017f277f01777121dae3f2fb085e92", "sha256": "x", "built": "2024-01-01T00:00:00Z",
     "registrations": [
       {"cloud": "ec2", "target": "ec2-ebs", "region": "us-east-1", "image_id": "ami-0c0ffee0c0ffee000", "time": "2024-01-01T00:00:00Z"},
       {"cloud": "openstack", "target": "glance", "cloud_name": "devstack", "region": "RegionOne", "image_id": "5f1c6d2e-glance-conpaas", "time": "2024-01-01T00:00:00Z"}
     ]}
  ]
}
`

// newEnv writes a config with an OpenStack [iaas] (the Nova fake) plus
// whatever extra is given, issues certificates and adds users alice and
// bob. It does not start serve.
func newEnv(t *testing.T, extraIaas, extraSections string) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), nova: novafake.New()}
	t.Cleanup(e.nova.Close)
	e.nova.AddImage("5f1c6d2e-glance-conpaas", "")
	e.nova.AddKeypair("conpaas-key")
	e.nova.AddSecGroup("conpaas", 443, 5555)
	e.port = freePort(t)
	e.url = fmt.Sprintf("https://127.0.0.1:%d", e.port)
	e.catalog = filepath.Join(e.dir, "catalogue.json")
	os.WriteFile(e.catalog, []byte(catalogueJSON), 0o644)
	os.WriteFile(filepath.Join(e.dir, "ConPaaS.tar.gz"), []byte("\x1f\x8bfake tarball contents"), 0o644)
	cfg := fmt.Sprintf(`[conpaas]
DIRECTOR_URL = %s
CONF_DIR = %s
LISTEN = 127.0.0.1:%d

[iaas]
DRIVER = openstack
AUTH_URL = %s
USER = admin
PASSWORD = secret
PROJECT = demo
REGION = RegionOne
CLOUD_NAME = devstack
IMAGE = catalogue:conpaas
FLAVOR = m1.small
SECURITY_GROUP_NAME = conpaas
KEY_NAME = conpaas-key
%s
%s`, e.url, e.dir, e.port, e.nova.AuthURL(), extraIaas, extraSections)
	e.cfg = filepath.Join(e.dir, "director.cfg")
	os.WriteFile(e.cfg, []byte(cfg), 0o600)
	if o, er, code := run(t, "", "certs", "--config", e.cfg); code != 0 {
		t.Fatalf("certs: %d %s %s", code, o, er)
	}
	for _, u := range []string{"alice", "bob"} {
		if o, er, code := run(t, u+"-password\n", "adduser", "--config", e.cfg, "--password-stdin", u); code != 0 {
			t.Fatalf("adduser: %d %s %s", code, o, er)
		}
	}
	ca, err := os.ReadFile(filepath.Join(e.dir, "certs", "ca_cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	e.caPool = x509.NewCertPool()
	e.caPool.AppendCertsFromPEM(ca)
	return e
}

// start runs serve and waits until it listens.
func (e *env) start(args ...string) {
	t := e.t
	t.Helper()
	e.cmd = exec.Command(bin, append([]string{"serve", "--config", e.cfg}, args...)...)
	pr, pw := io.Pipe()
	e.stderr = &bytes.Buffer{}
	e.cmd.Stderr = io.MultiWriter(pw, e.stderr)
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "cpsdirector: listening on") {
				ready <- true
			}
		}
		ready <- false
	}()
	done := make(chan struct{})
	go func() { e.cmd.Wait(); pw.Close(); close(done) }()
	t.Cleanup(func() {
		e.cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			e.cmd.Process.Kill()
		}
	})
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("serve exited: %s", e.stderr)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("serve did not start: %s", e.stderr)
	}
}

// client returns an HTTP client trusting the director's CA, presenting
// cert if given.
func (e *env) client(cert *tls.Certificate) *http.Client {
	tc := &tls.Config{RootCAs: e.caPool, MinVersion: tls.VersionTLS12}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
}

// certFor logs in with the password and obtains a client certificate
// through get_certificate with a CSR.
func (e *env) certFor(user, password string) *tls.Certificate {
	t := e.t
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: user}}, key)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]string{"username": user, "password": password,
		"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}))})
	resp, err := e.client(nil).Post(e.url+"/get_certificate", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Cert, CA_Cert, Key string }
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("get_certificate %s: %d %s", user, resp.StatusCode, b)
	}
	json.NewDecoder(resp.Body).Decode(&out)
	if out.Key != "" {
		t.Fatal("director returned a private key although a CSR was sent")
	}
	b, _ := pem.Decode([]byte(out.Cert))
	c := &tls.Certificate{Certificate: [][]byte{b.Bytes}, PrivateKey: key}
	return c
}

// call does one JSON request and decodes the answer into out (if non-nil).
func (e *env) call(c *http.Client, method, path string, in, out any) int {
	t := e.t
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequestWithContext(context.Background(), method, e.url+path, body)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

// ec2Env is filled in by the EC2 fake tests.
type ec2Env struct{}
