package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/conpaas/cps/cmd/cpsdirector/internal/certs"
)

type app struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

type svc struct {
	ID      int64  `json:"id"`
	Type    string `json:"type"`
	Cloud   string `json:"cloud"`
	State   string `json:"state"`
	Error   string `json:"error"`
	VMState string `json:"vm_state"`
	Manager *struct {
		InstanceID string `json:"instance_id"`
		ImageID    string `json:"image_id"`
		State      string `json:"state"`
		Terminated string `json:"terminated"`
	} `json:"manager"`
}

func TestDirectorSecurity(t *testing.T) {
	e := newEnv(t, "", "")
	e.start()
	anon := e.client(nil)

	// No access without a certificate.
	for _, p := range []string{"/user", "/applications", "/services", "/clouds", "/images", "/applications/1/services"} {
		if code := e.call(anon, "GET", p, nil, nil); code != 401 {
			t.Errorf("anonymous GET %s: %d, want 401", p, code)
		}
	}
	if code := e.call(anon, "POST", "/applications", map[string]string{"name": "x"}, nil); code != 401 {
		t.Errorf("anonymous create: %d", code)
	}

	// Wrong passwords and injection attempts in the user name fail alike.
	for _, creds := range [][2]string{{"alice", "wrong-password"}, {"nobody", "alice-password"},
		{"' OR '1'='1", "' OR '1'='1"}, {"alice' --", "x"}, {"alice\"; DROP TABLE users; --", "alice-password"}} {
		var out map[string]string
		if code := e.call(anon, "POST", "/login", map[string]string{"username": creds[0], "password": creds[1]}, &out); code != 401 {
			t.Errorf("login %q: %d %v", creds[0], code, out)
		}
	}
	if code := e.call(anon, "POST", "/login", map[string]string{"username": "alice", "password": "alice-password"}, nil); code != 200 {
		t.Fatalf("alice login: %d", code)
	}

	alice := e.client(e.certFor("alice", "alice-password"))
	bob := e.client(e.certFor("bob", "bob-password"))
	var who struct {
		ID       int64
		Username string
	}
	if e.call(alice, "GET", "/user", nil, &who); who.Username != "alice" {
		t.Fatalf("whoami %+v", who)
	}

	// A certificate from a foreign CA is refused in the handshake.
	// (GetClientCertificate forces sending it even though the server's
	// acceptable-CA list does not name its issuer.)
	foreign := selfSigned(t, "alice")
	fc := e.client(nil)
	fc.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &foreign, nil }
	if resp, err := fc.Get(e.url + "/user"); err == nil {
		resp.Body.Close()
		t.Errorf("certificate from another CA accepted: %d", resp.StatusCode)
	}

	// SQL in names is stored verbatim and breaks nothing.
	evil := `x'); DROP TABLE users; --`
	var a app
	if code := e.call(alice, "POST", "/applications", map[string]string{"name": evil}, &a); code != 201 || a.Name != evil {
		t.Fatalf("create %d %+v", code, a)
	}
	if code := e.call(alice, "POST", "/applications", map[string]string{"name": evil}, nil); code != 409 {
		t.Errorf("duplicate app: %d", code)
	}
	if code := e.call(alice, "POST", "/applications", map[string]string{"name": "bad\x00name"}, nil); code != 400 {
		t.Errorf("control chars: %d", code)
	}
	if code := e.call(anon, "POST", "/login", map[string]string{"username": "bob", "password": "bob-password"}, nil); code != 200 {
		t.Fatalf("users table damaged: bob login %d", code)
	}

	// Bob sees nothing of Alice's.
	var bobApps []app
	e.call(bob, "GET", "/applications", nil, &bobApps)
	if len(bobApps) != 0 {
		t.Fatalf("bob sees %v", bobApps)
	}
	id := a.ID
	for _, c := range []struct{ m, p string }{
		{"GET", fmt.Sprintf("/applications/%d/services", id)},
		{"POST", fmt.Sprintf("/applications/%d/services", id)},
		{"DELETE", fmt.Sprintf("/applications/%d", id)},
	} {
		if code := e.call(bob, c.m, c.p, map[string]string{"type": "php"}, nil); code != 404 {
			t.Errorf("bob %s %s: %d, want 404", c.m, c.p, code)
		}
	}
	for _, p := range []string{"/applications/1%20OR%201=1/services", "/applications/-1/services", "/services/0"} {
		if code := e.call(bob, "GET", p, nil, nil); code != 400 {
			t.Errorf("GET %s: %d, want 400", p, code)
		}
	}
	var aliceApps []app
	e.call(alice, "GET", "/applications", nil, &aliceApps)
	if len(aliceApps) != 1 || aliceApps[0].Name != evil {
		t.Fatalf("alice apps %v", aliceApps)
	}

	// Downloads: exactly the two files, nothing else of CONF_DIR.
	tar := rawGet(t, e, "/ConPaaS.tar.gz")
	if tar.code != 200 || tar.body != "\x1f\x8bfake tarball contents" {
		t.Fatalf("tarball %d %q", tar.code, tar.body)
	}
	if ca := rawGet(t, e, "/ca_cert.pem"); ca.code != 200 || !strings.Contains(ca.body, "BEGIN CERTIFICATE") {
		t.Fatalf("ca %d", ca.code)
	}
	for _, p := range []string{"/../director.db", "/%2e%2e/director.db", "/ConPaaS.tar.gz/../director.cfg", "/certs/ca_key.pem",
		"/director.db", "/ca_cert.pem/..%2fcerts%2fca_key.pem", "/..%2f..%2f..%2fetc%2fpasswd", "//etc/passwd", "/ConPaaS.tar.gz%00.pem"} {
		r := rawGet(t, e, p)
		if r.code == 200 || strings.Contains(r.body, "PRIVATE KEY") || strings.Contains(r.body, "SQLite") || strings.Contains(r.body, "root:") {
			t.Errorf("GET %s: %d %.60q", p, r.code, r.body)
		}
	}

	// TLS below 1.2 is refused.
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", e.port), &tls.Config{RootCAs: e.caPool, MinVersion: v, MaxVersion: v})
		if err == nil {
			c.Close()
			t.Errorf("TLS version %x accepted", v)
		}
	}
	// Plain HTTP gets no API.
	if r, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/applications", e.port)); err == nil {
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if r.StatusCode == 200 || strings.Contains(string(b), evil) {
			t.Errorf("plain http served: %d", r.StatusCode)
		}
	}
}

type rawResp struct {
	code int
	body string
}

// rawGet sends the path byte for byte (no client-side cleaning of ../).
func rawGet(t *testing.T, e *env, path string) rawResp {
	t.Helper()
	c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", e.port), &tls.Config{RootCAs: e.caPool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path)
	b, _ := io.ReadAll(c)
	s := string(b)
	var code int
	fmt.Sscanf(s, "HTTP/1.1 %d", &code)
	if i := strings.Index(s, "\r\n\r\n"); i >= 0 {
		s = s[i+4:]
	}
	return rawResp{code, s}
}

func selfSigned(t *testing.T, cn string) tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn, OrganizationalUnit: []string{"user"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestServiceLifecycleOpenStack(t *testing.T) {
	e := newEnv(t, "", "")
	e.start()
	alice := e.client(e.certFor("alice", "alice-password"))
	var clouds []map[string]any
	e.call(alice, "GET", "/clouds", nil, &clouds)
	if len(clouds) != 1 || clouds[0]["name"] != "iaas" || clouds[0]["driver"] != "openstack" {
		t.Fatalf("clouds %v", clouds)
	}
	var imgs []map[string]any
	e.call(alice, "GET", "/images", nil, &imgs)
	if len(imgs) != 1 || imgs[0]["image_id"] != "5f1c6d2e-glance-conpaas" || imgs[0]["version"] != "2.1.0" {
		t.Fatalf("images %v", imgs)
	}
	var a app
	e.call(alice, "POST", "/applications", map[string]string{"name": "shop"}, &a)
	if code := e.call(alice, "POST", fmt.Sprintf("/applications/%d/services", a.ID), map[string]string{"type": "cobol"}, nil); code != 400 {
		t.Errorf("unknown type: %d", code)
	}
	if code := e.call(alice, "POST", fmt.Sprintf("/applications/%d/services", a.ID), map[string]string{"type": "php", "cloud": "mars"}, nil); code != 400 {
		t.Errorf("unknown cloud: %d", code)
	}
	var s svc
	if code := e.call(alice, "POST", fmt.Sprintf("/applications/%d/services", a.ID), map[string]string{"type": "php"}, &s); code != 201 {
		t.Fatalf("start: %d %+v", code, s)
	}
	if s.State != "running" || s.Manager == nil || s.Manager.ImageID != "5f1c6d2e-glance-conpaas" {
		t.Fatalf("service %+v", s)
	}
	vms := e.nova.Servers()
	if len(vms) != 1 {
		t.Fatalf("nova servers %v", vms)
	}
	vm := vms[0]
	if vm.ID != s.Manager.InstanceID || vm.ImageRef != "5f1c6d2e-glance-conpaas" || vm.FlavorRef != "2" || vm.KeyName != "conpaas-key" ||
		len(vm.SecurityGroups) != 1 || vm.SecurityGroups[0] != "conpaas" || vm.Metadata["conpaas:role"] != "manager" {
		t.Fatalf("server %+v", vm)
	}
	checkUserData(t, e, string(vm.UserData), "php", a.ID, s.ID)

	var st svc
	e.call(alice, "GET", fmt.Sprintf("/services/%d", s.ID), nil, &st)
	if st.VMState != "BUILD" {
		t.Errorf("vm state %q", st.VMState)
	}
	// Bob cannot stop it.
	bob := e.client(e.certFor("bob", "bob-password"))
	if code := e.call(bob, "POST", fmt.Sprintf("/services/%d/stop", s.ID), nil, nil); code != 404 {
		t.Errorf("bob stop: %d", code)
	}
	if code := e.call(alice, "POST", fmt.Sprintf("/services/%d/stop", s.ID), nil, &st); code != 200 || st.State != "stopped" || st.Manager.Terminated == "" {
		t.Fatalf("stop %d %+v", code, st)
	}
	if v := e.nova.Servers()[0]; !v.Deleted {
		t.Fatal("server not deleted")
	}
	// A second service, removed with its application.
	e.call(alice, "POST", fmt.Sprintf("/applications/%d/services", a.ID), map[string]string{"type": "mysql"}, &s)
	if code := e.call(alice, "DELETE", fmt.Sprintf("/applications/%d", a.ID), nil, nil); code != 204 {
		t.Fatalf("delete app %d", code)
	}
	if v := e.nova.Servers(); len(v) != 2 || !v[1].Deleted {
		t.Fatalf("delete app left %+v", v)
	}
	var list []svc
	e.call(alice, "GET", "/services", nil, &list)
	if len(list) != 0 {
		t.Fatalf("services after delete %v", list)
	}
}

// checkUserData verifies the manager boot script carries what the manager
// needs: DIRECTOR_URL, BOOTSTRAP (= DIRECTOR_URL), the CA, a manager
// certificate signed by it, the service type and ids.
func checkUserData(t *testing.T, e *env, ud, typ string, appID, svcID int64) {
	t.Helper()
	for _, want := range []string{
		"DIRECTOR_URL = " + e.url + "\n", "BOOTSTRAP = " + e.url + "\n", "TYPE = " + typ + "\n",
		fmt.Sprintf("APP_ID = %d\n", appID), fmt.Sprintf("SERVICE_ID = %d\n", svcID),
		"--ca-certificate /etc/cpsmanager/certs/ca_cert.pem", e.url + "/ConPaaS.tar.gz",
	} {
		if !strings.Contains(ud, want) {
			t.Errorf("user-data lacks %q:\n%s", want, ud)
		}
	}
	// The seeds' troubleshooting command finds the URL in field 3.
	if m := regexp.MustCompile(`(?m)^BOOTSTRAP = (\S+)$`).FindStringSubmatch(ud); m == nil || m[1] != e.url {
		t.Errorf("BOOTSTRAP line %v", m)
	}
	ca, _ := os.ReadFile(filepath.Join(e.dir, "certs", "ca_cert.pem"))
	if !strings.Contains(ud, string(ca)) {
		t.Error("user-data lacks the director's CA certificate")
	}
	i := strings.Index(ud, "/etc/cpsmanager/certs/cert.pem <<'CPS_EOF'\n")
	if i < 0 {
		t.Fatal("no manager certificate")
	}
	b, _ := pem.Decode([]byte(ud[i+len("/etc/cpsmanager/certs/cert.pem <<'CPS_EOF'\n"):]))
	mc, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mc.Verify(x509.VerifyOptions{Roots: e.caPool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("manager cert: %v", err)
	}
	id, err := certs.IdentityOf(mc)
	if err != nil || id.Role != "manager" || id.ID != svcID {
		t.Fatalf("manager identity %+v %v", id, err)
	}
}

func TestStartupErrors(t *testing.T) {
	cases := []struct {
		name          string
		iaas, extra   string
		catalogue     string
		wantCode      int
		wantInStderr  string
		serveOnlyTest bool
	}{
		{name: "unknown cloud", wantCode: 2, wantInStderr: `director.cfg:18: OTHER_CLOUDS names cloud "nowhere" but there is no [nowhere] section`},
		{name: "no matching image", catalogue: `{"schema_version":1,"artifacts":[{"name":"conpaas","version":"2.1.0","kind":"raw","arch":"amd64","file":"f","size":1,"md5":"","sha256":"","built":"2024-01-01T00:00:00Z","registrations":[{"cloud":"openstack","target":"glance","cloud_name":"othercloud","image_id":"x","time":"2024-01-01T00:00:00Z"}]}]}`,
			wantCode: 2, wantInStderr: "cloud iaas: IMAGE = catalogue:conpaas is not registered for openstack cloud devstack region RegionOne (amd64) (registered: 2.1.0 openstack othercloud)"},
		{name: "broken catalogue", catalogue: "{\n\"schema_version\": 1,\n\"artifacts\": [}\n", wantCode: 2, wantInStderr: "catalogue.json: line 3"},
		{name: "bad credentials", iaas: "", wantCode: 1, wantInStderr: "cloud iaas (openstack, line 6 of"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.iaas, tc.extra)
			if tc.catalogue != "" {
				os.WriteFile(e.catalog, []byte(tc.catalogue), 0o644)
			}
			if tc.name == "bad credentials" {
				e.nova.Password = "changed"
			}
			if tc.name == "unknown cloud" {
				cfg, _ := os.ReadFile(e.cfg)
				os.WriteFile(e.cfg, bytes.Replace(cfg, []byte("KEY_NAME = conpaas-key\n"), []byte("KEY_NAME = conpaas-key\nOTHER_CLOUDS = nowhere\n"), 1), 0o600)
			}
			_, stderr, code := run(t, "", "serve", "--config", e.cfg)
			if code != tc.wantCode || !strings.Contains(stderr, tc.wantInStderr) {
				t.Fatalf("exit %d, stderr:\n%s\nwant %d and %q", code, stderr, tc.wantCode, tc.wantInStderr)
			}
			if tc.name == "bad credentials" && !strings.Contains(stderr, "credentials rejected") {
				t.Fatalf("stderr %s", stderr)
			}
		})
	}
	// A config syntax error names the line, for every command.
	dir := t.TempDir()
	p := filepath.Join(dir, "director.cfg")
	os.WriteFile(p, []byte("[conpaas]\nDIRECTOR_URL = https://h\n[iaas]\nDRIVER ec2\n"), 0o600)
	for _, c := range []string{"serve", "certs", "images", "check"} {
		_, stderr, code := run(t, "", c, "--config", p)
		if code != 2 || !strings.Contains(stderr, p+":4: expected KEY = value") {
			t.Errorf("%s: exit %d %s", c, code, stderr)
		}
	}
	_, stderr, code := run(t, "", "serve", "--config", filepath.Join(dir, "missing.cfg"))
	if code != 2 || !strings.Contains(stderr, "does not exist") {
		t.Errorf("missing config: %d %s", code, stderr)
	}
}

func TestCertsReissueAndImages(t *testing.T) {
	e := newEnv(t, "", "")
	caBefore, _ := os.ReadFile(filepath.Join(e.dir, "certs", "ca_cert.pem"))
	out, _, code := run(t, "", "certs", "--config", e.cfg)
	if code != 0 || !strings.Contains(out, "server certificate for 127.0.0.1 is up to date") || !strings.Contains(out, "kept CA") {
		t.Fatalf("rerun: %s", out)
	}
	// Hostname change: new server certificate, same CA.
	cfg, _ := os.ReadFile(e.cfg)
	os.WriteFile(e.cfg, bytes.Replace(cfg, []byte("https://127.0.0.1:"), []byte("https://director.example.org:"), 1), 0o600)
	out, _, code = run(t, "", "certs", "--config", e.cfg)
	if code != 0 || !strings.Contains(out, "re-issued server certificate for director.example.org (was 127.0.0.1)") {
		t.Fatalf("reissue: %d %s", code, out)
	}
	caAfter, _ := os.ReadFile(filepath.Join(e.dir, "certs", "ca_cert.pem"))
	if !bytes.Equal(caBefore, caAfter) {
		t.Fatal("CA changed")
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(e.dir, "certs", "cert.pem"), filepath.Join(e.dir, "certs", "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	if leaf.Subject.CommonName != "director.example.org" || len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "director.example.org" || len(leaf.IPAddresses) != 0 {
		t.Fatalf("leaf %v %v %v", leaf.Subject, leaf.DNSNames, leaf.IPAddresses)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: e.caPool, DNSName: "director.example.org"}); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(filepath.Join(e.dir, "certs", "ca_key.pem"))
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("ca key mode %v", st.Mode())
	}

	out, stderr, code := run(t, "", "images", "--config", e.cfg)
	if code != 0 || !regexp.MustCompile(`iaas\s+openstack\s+RegionOne\s+amd64\s+5f1c6d2e-glance-conpaas\s+catalogue:conpaas\s+2.1.0`).MatchString(out) {
		t.Fatalf("images: %d %s %s", code, out, stderr)
	}
}

func TestAddUser(t *testing.T) {
	e := newEnv(t, "", "")
	for _, c := range []struct {
		stdin, user string
		args        []string
		code        int
		msg         string
	}{
		{"short\n", "carol", nil, 2, "password too short"},
		{"", "carol", nil, 2, "no password on standard input"},
		{"long-enough-pw\n", "alice", nil, 1, `user "alice" already exists`},
		{"long-enough-pw\n", "bad name", nil, 2, "contains spaces"},
		{"long-enough-pw\n", "dave", []string{"--reset"}, 1, `no user "dave"`},
		{"new-alice-password\n", "alice", []string{"--reset"}, 0, "password of alice changed"},
	} {
		args := append([]string{"adduser", "--config", e.cfg, "--password-stdin"}, c.args...)
		out, stderr, code := run(t, c.stdin, append(args, c.user)...)
		if code != c.code || !strings.Contains(out+stderr, c.msg) {
			t.Errorf("adduser %s %v: %d %s%s", c.user, c.args, code, out, stderr)
		}
	}
	// The password is hashed with bcrypt, never stored.
	db, _ := os.ReadFile(filepath.Join(e.dir, "director.db"))
	if bytes.Contains(db, []byte("alice-password")) || !bytes.Contains(db, []byte("$2a$11$")) {
		t.Error("password not bcrypt-hashed in the database")
	}
	_ = net.IPv4len
}
