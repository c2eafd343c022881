package main

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/conpaas/cps/internal/testutil"
	"github.com/conpaas/cps/test/ec2fake"
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

// env is one director under test with its clouds: the Nova fake as the
// default cloud ([iaas]) and the EC2 fake as OTHER_CLOUDS = aws, both
// giving their VMs the address 127.0.0.1, where the test serves the
// managers and agents the director talks to (fakeVMs).
type env struct {
	t        *testing.T
	dir, cfg string
	url      string
	port     int
	nova     *novafake.Server
	ec2      *ec2fake.Fake
	vms      *fakeVMs
	tarball  []byte
	dbURI    string
	cmd      *exec.Cmd
	done     chan struct{}
	stderr   *syncBuffer
}

// syncBuffer collects the director's stderr.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const catalogueJSON = `{
  "schema_version": 1,
  "artifacts": [
    {"name": "conpaas", "version": "2.1.0", "kind": "raw", "arch": "amd64", "file": "conpaas.img", "size": 1, "md5": "c6017f277f01777121dae3f2fb085e92", "sha256": "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03", "built": "2024-01-01T00:00:00Z",
     "registrations": [
       {"cloud": "ec2", "target": "ec2-ebs", "region": "us-east-1", "image_id": "ami-0c0ffee0c0ffee000", "time": "2024-01-01T00:00:00Z"},
       {"cloud": "openstack", "target": "glance", "cloud_name": "devstack", "region": "RegionOne", "image_id": "5f1c6d2e-glance-conpaas", "time": "2024-01-01T00:00:00Z"}
     ]}
  ]
}
`

// testTarball is a ConPaaS.tar.gz with the one file a manager VM would
// start (the director does not look further).
func testTarball(t *testing.T) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	// It records how it was started, next to sbin/ (TestManagerContextRuns).
	body := "#!/bin/sh\necho \"$*\" > \"$(dirname \"$0\")/../../started\"\n"
	tw.WriteHeader(&tar.Header{Name: "ConPaaS/sbin/manager/default-cpsmanager", Mode: 0o755, Size: int64(len(body)), Typeflag: tar.TypeReg})
	tw.Write([]byte(body))
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

// envOpts tunes newEnv.
type envOpts struct {
	dbURI string // DATABASE_URI; default sqlite:////DIR/director.db
	iaas  string // appended to [iaas]
	extra string // appended to [director]
}

// newEnv writes a director.cfg in the original's layout ([conpaas],
// [iaas] + OTHER_CLOUDS, [director] with DATABASE_URI and DIRECTOR_URL),
// issues certificates. It does not start serve.
func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), nova: novafake.New(), ec2: ec2fake.Start()}
	t.Cleanup(e.nova.Close)
	t.Cleanup(e.ec2.Close)
	e.nova.FloatingIP = "127.0.0.1"
	e.nova.AddImage("5f1c6d2e-glance-conpaas", "")
	e.nova.AddKeypair("conpaas-key")
	e.nova.AddSecGroup("conpaas", 443, 5555)
	e.ec2.InstanceIP = "127.0.0.1"
	e.ec2.AddImage("us-east-1", "ami-0c0ffee0c0ffee000", "conpaas-2.1.0")
	e.ec2.AddSecurityGroup("us-east-1", "conpaas", 443, 5555)
	e.vms = newFakeVMs(t, e)
	e.port = testutil.FreePort(t)
	e.url = fmt.Sprintf("https://127.0.0.1:%d", e.port)
	os.WriteFile(filepath.Join(e.dir, "catalogue.json"), []byte(catalogueJSON), 0o644)
	e.tarball = testTarball(t)
	os.WriteFile(filepath.Join(e.dir, "ConPaaS.tar.gz"), e.tarball, 0o644)
	e.dbURI = o.dbURI
	if e.dbURI == "" {
		e.dbURI = "sqlite:///" + filepath.Join(e.dir, "director.db")
	}
	cfg := fmt.Sprintf(`[conpaas]
CONF_DIR = %[1]s
CERT_DIR = %[1]s/certs
DEPLOYMENT_NAME = cps-test
SUPPORT_EXTERNAL_IDP = false
MAX_CREDIT = 50

[iaas]
DRIVER = openstack
USER = admin
PASSWORD = secret
AUTH_URL = %[2]s
PROJECT = demo
REGION = RegionOne
CLOUD_NAME = devstack
IMAGE = catalogue:conpaas
SIZE_ID = m1.small
SECURITY_GROUP_NAME = conpaas
KEY_NAME = conpaas-key
OTHER_CLOUDS = aws
%[12]s

[aws]
DRIVER = ec2
USER = %[3]s
PASSWORD = %[4]s
REGION = ec2.us-east-1.amazonaws.com
ENDPOINT = %[5]s
IMAGE_ID = ami-0c0ffee0c0ffee000
SIZE_ID = t3.small
SECURITY_GROUP_NAME = conpaas
KEY_NAME = conpaas-key

[director]
DEBUG = true
DATABASE_URI = %[6]s
USERDATA_DIR = %[1]s/data
DIRECTOR_URL = %[7]s
LISTEN = 127.0.0.1:%[8]d
MANAGER_PORT = %[9]d
AGENT_PORT = %[10]d
NODE_TIMEOUT = 60s
%[11]s
`, e.dir, e.nova.AuthURL(), e.ec2.AccessKey, e.ec2.Secret, e.ec2.URL, e.dbURI, e.url, e.port, e.vms.managerPort, e.vms.agentPort, o.extra, o.iaas)
	e.cfg = filepath.Join(e.dir, "director.cfg")
	os.WriteFile(e.cfg, []byte(cfg), 0o600)
	if o, er, code := run(t, "", "certs", "--config", e.cfg); code != 0 {
		t.Fatalf("certs: %d %s %s", code, o, er)
	}
	e.ec2.Mu().Lock()
	e.ec2.Groups["us-east-1/conpaas"].TCPPorts[22] = true
	e.ec2.Mu().Unlock()
	return e
}

// start runs serve and waits until it listens.
func (e *env) start(args ...string) {
	t := e.t
	t.Helper()
	e.cmd = exec.Command(bin, append([]string{"serve", "--config", e.cfg}, args...)...)
	pr, pw := io.Pipe()
	if e.stderr == nil {
		e.stderr = &syncBuffer{}
	}
	e.cmd.Stderr = io.MultiWriter(pw, e.stderr)
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sent := false
		for sc.Scan() {
			if !sent && strings.Contains(sc.Text(), "cpsdirector: listening on") {
				ready <- true
				sent = true
			}
		}
		if !sent {
			ready <- false
		}
	}()
	done := make(chan struct{})
	e.done = done
	cmd := e.cmd
	go func() { cmd.Wait(); pw.Close(); close(done) }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("director's log:\n%s", e.stderr)
		}
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
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

// kill stops the director with SIGKILL (no clean-up at all).
func (e *env) kill() {
	e.cmd.Process.Signal(syscall.SIGKILL)
	<-e.done
}

// client is an original ConPaaS client: form-encoded requests to the
// director with the user's name and password on every call (conpaas-client
// cps/base.py __callapi_creds; cps-tools adds the password only where no
// certificate is used), the client certificate from getcerts' zip when it
// has one, and the director verified with that zip's ca_cert.pem.
type pclient struct {
	e                  *env
	username, password string
	hc                 *http.Client
	certs              map[string][]byte // cert.pem, key.pem, ca_cert.pem
}

func (e *env) login(user, password string) *pclient {
	c := &pclient{e: e, username: user, password: password}
	c.hc = &http.Client{Timeout: 3 * time.Minute, Transport: &http.Transport{TLSClientConfig: e.tlsConfig(nil)}}
	return c
}

// tlsConfig trusts the director's CA (read from CERT_DIR) and presents
// cert if given.
func (e *env) tlsConfig(cert *tls.Certificate) *tls.Config {
	ca, err := os.ReadFile(filepath.Join(e.dir, "certs", "ca_cert.pem"))
	if err != nil {
		e.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	return tc
}

type resp struct {
	code int
	ct   string
	body []byte
}

// call sends method with form values (username and password added as the
// original client did) and returns the answer.
func (c *pclient) call(method, path string, form url.Values) resp {
	c.e.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	// cps-tools' call_director: fields the call sets itself win.
	if _, ok := form["username"]; !ok {
		form.Set("username", c.username)
	}
	if _, ok := form["password"]; !ok {
		form.Set("password", c.password)
	}
	var req *http.Request
	if method == http.MethodGet {
		req, _ = http.NewRequest(method, c.e.url+path+"?"+form.Encode(), nil)
	} else {
		req, _ = http.NewRequest(method, c.e.url+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	r, err := c.hc.Do(req)
	if err != nil {
		c.e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return resp{r.StatusCode, r.Header.Get("Content-Type"), b}
}

// getcerts fetches the zip and switches to the certificate in it
// (cps-tools user get_certificate: extract into ~/.conpaas).
func (c *pclient) getcerts() {
	t := c.e.t
	t.Helper()
	r := c.call("POST", "/getcerts", nil)
	if r.code != 200 || r.ct != "application/zip" {
		t.Fatalf("getcerts: %d %s %s", r.code, r.ct, r.body)
	}
	zr, err := zip.NewReader(bytes.NewReader(r.body), int64(len(r.body)))
	if err != nil {
		t.Fatal(err)
	}
	c.certs = map[string][]byte{}
	for _, f := range zr.File {
		rc, _ := f.Open()
		c.certs[f.Name], _ = io.ReadAll(rc)
		rc.Close()
	}
	pair, err := tls.X509KeyPair(c.certs["cert.pem"], c.certs["key.pem"])
	if err != nil {
		t.Fatalf("getcerts zip: %v (files %v)", err, keys(c.certs))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(c.certs["ca_cert.pem"]) {
		t.Fatal("getcerts zip: bad ca_cert.pem")
	}
	c.hc = &http.Client{Timeout: 3 * time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}}}
}

func keys[V any](m map[string]V) []string {
	var l []string
	for k := range m {
		l = append(l, k)
	}
	return l
}

// leafOf parses the first certificate of a PEM.
func leafOf(t *testing.T, p []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(p)
	if b == nil {
		t.Fatalf("no PEM in %q", p)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitFor polls cond for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

var _ = context.Background
