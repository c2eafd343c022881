package main

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/conpaas/cps/cmd/cpsdirector/internal/db/dbtest"
	"github.com/conpaas/cps/internal/testutil"
)

// openssl runs OpenSSL, the library under the original's pyOpenSSL: the
// certificates below are made the way cpsconf.py and x509cert.py made
// them (X.509 v1, RSA 2048, SHA-1, the ConPaaS subject fields).
func openssl(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl %v: %v\n%s", args, err, out)
	}
}

// originalCerts makes CERT_DIR as cpsconf.py left it (ca_cert.pem,
// ca_key.pem, cert.pem/key.pem for the director, role frontend, no SAN)
// plus a user certificate the original's /getcerts issued for uid 1.
func originalCerts(t *testing.T, certDir, host string) (userCert, userKey string) {
	t.Helper()
	testutil.RequireTool(t, "openssl")
	os.MkdirAll(certDir, 0o755)
	openssl(t, certDir, "genrsa", "-traditional", "-out", "ca_key.pem", "2048")
	openssl(t, certDir, "req", "-new", "-key", "ca_key.pem", "-subj", "/CN=CA/emailAddress=info@conpaas.eu/O=ConPaaS", "-out", "ca.csr")
	openssl(t, certDir, "x509", "-req", "-in", "ca.csr", "-signkey", "ca_key.pem", "-days", "1825", "-sha1", "-set_serial", "1234567", "-out", "ca_cert.pem")
	openssl(t, certDir, "genrsa", "-traditional", "-out", "key.pem", "2048")
	openssl(t, certDir, "req", "-new", "-key", "key.pem", "-subj", "/CN="+host+"/emailAddress=info@conpaas.eu/O=ConPaaS/role=frontend", "-out", "d.csr")
	openssl(t, certDir, "x509", "-req", "-in", "d.csr", "-CA", "ca_cert.pem", "-CAkey", "ca_key.pem", "-days", "1825", "-sha1", "-set_serial", "2345678", "-out", "cert.pem")
	u := t.TempDir()
	openssl(t, u, "genrsa", "-traditional", "-out", "key.pem", "2048")
	openssl(t, u, "req", "-new", "-key", "key.pem", "-subj", "/UID=1/serviceLocator=0/O=Contrail/emailAddress=alice@example.org/CN=alice/role=user", "-out", "u.csr")
	openssl(t, u, "x509", "-req", "-in", "u.csr", "-CA", filepath.Join(certDir, "ca_cert.pem"), "-CAkey", filepath.Join(certDir, "ca_key.pem"), "-days", "365", "-sha1", "-set_serial", "77", "-out", "cert.pem")
	for _, f := range []string{"ca.csr", "d.csr"} {
		os.Remove(filepath.Join(certDir, f))
	}
	return filepath.Join(u, "cert.pem"), filepath.Join(u, "key.pem")
}

// An installation of the original director: its CA, its director.db, its
// users' certificates. cpsdirector keeps the CA, migrates the database,
// lets old users log in with their passwords (upgrading the MD5 hashes)
// and their certificates, until a reset or deletion revokes them.
func TestOriginalInstallation(t *testing.T) {
	t.Parallel()
	e := newEnvNoCerts(t)
	userCert, userKey := originalCerts(t, filepath.Join(e.dir, "certs"), "127.0.0.1")
	caBefore, _ := os.ReadFile(filepath.Join(e.dir, "certs", "ca_cert.pem"))
	sqlite := testutil.RequireTool(t, "sqlite3")
	cmd := exec.Command(sqlite, filepath.Join(e.dir, "director.db"))
	cmd.Stdin = strings.NewReader(dbtest.OriginalSQLite + dbtest.OriginalRows)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sqlite3: %v %s", err, out)
	}

	out, errOut, code := run(t, "", "certs", "--config", e.cfg)
	if code != 0 || !strings.Contains(out, "kept CA "+filepath.Join(e.dir, "certs", "ca_cert.pem")+" (X.509 v1, as the original cpsconf.py made it") ||
		!strings.Contains(out, "re-issued server certificate for 127.0.0.1") {
		t.Fatalf("certs: %d %s %s", code, out, errOut)
	}
	if caAfter, _ := os.ReadFile(filepath.Join(e.dir, "certs", "ca_cert.pem")); !bytes.Equal(caBefore, caAfter) {
		t.Fatal("the original CA was replaced")
	}
	e.start()

	// Old passwords (MD5 in the original's database) log in; the hash
	// becomes bcrypt.
	r := e.login("alice", "alice-password").call("POST", "/login", nil)
	match(t, "login", r.body, `{"uid": 1, "username": "alice", "fname": "Alice", "lname": "Liddell", "email": "alice@example.org",
		"affiliation": "VU", "credit": 42, "created": "2015-03-04T10:11:12.131415", "uuid": null, "openid": null}`)
	exact(t, "wrong password", e.login("alice", "dac24dcc2864a1e7f549fd6c7795c7b8").call("POST", "/login", nil), 200, ctJSON, jsonifyErr("User authentication failed"))
	if r := e.login("bob", "bob").call("POST", "/login", nil); !strings.Contains(string(r.body), `"username": "bob"`) {
		t.Fatalf("bob (a short original password): %s", r.body)
	}
	dump := func() string {
		b, _ := exec.Command(sqlite, filepath.Join(e.dir, "director.db"), "SELECT username, password FROM user ORDER BY uid").CombinedOutput()
		return string(b)
	}
	if d := dump(); !strings.Contains(d, "alice|$2a$11$") || !strings.Contains(d, "bob|$2a$11$") || !strings.Contains(d, "carol|0ea43b0cf41532d0072bf83b8e306427") {
		t.Fatalf("hashes after login:\n%s", d)
	}
	// ...and still log in after the upgrade.
	if r := e.login("alice", "alice-password").call("POST", "/login", nil); !strings.Contains(string(r.body), `"uid": 1`) {
		t.Fatalf("login after upgrade: %s", r.body)
	}

	// alice's certificate from the original director (SHA-1, serial 77)
	// still works, and shows her migrated applications.
	old := e.login("alice", "")
	pair, err := tls.LoadX509KeyPair(userCert, userKey)
	if err != nil {
		t.Fatal(err)
	}
	old.hc = &http.Client{Transport: &http.Transport{TLSClientConfig: e.tlsConfig(&pair)}}
	r = old.call("GET", "/listapp", nil)
	match(t, "listapp with the original certificate", r.body, `[
		{"aid": 1, "name": "New Application", "uid": 1, "status": "INIT", "manager": null, "vmid": null, "cloud": null},
		{"aid": 2, "name": "shop", "uid": 1, "status": "RUNNING", "manager": "203.0.113.10", "vmid": "i-0123456789abcdef0", "cloud": "iaas"}]`)
	// New users get the next id: ids never go back.
	r = e.login("", "").call("POST", "/new_user", url.Values{"username": {"dave"}, "email": {"d@x"}, "password": {"dave-password"}, "credit": {"1"}})
	match(t, "new user", r.body, `{"uid": 4, "username": "dave", "fname": null, "lname": null, "email": "d@x", "affiliation": null, "credit": 1, "created": "<iso>", "uuid": null, "openid": null}`)
	// Look-alike names are refused.
	exact(t, "look-alike", e.login("", "").call("POST", "/new_user", url.Values{"username": {"ALICE"}, "email": {"x@x"}, "password": {"12345678"}, "credit": {"1"}}),
		200, ctJSON, jsonifyErr("Username 'ALICE' is already taken"))

	// A password reset revokes every certificate issued before it.
	fresh := e.login("alice", "alice-password")
	fresh.getcerts()
	if _, stderr, code := run(t, "new-alice-password\n", "adduser", "--config", e.cfg, "--reset", "--password-stdin", "alice"); code != 0 {
		t.Fatalf("adduser --reset: %s", stderr)
	}
	for name, c := range map[string]*pclient{"original": old, "issued before the reset": fresh} {
		r := c.call("GET", "/listapp", nil)
		if r.code != 401 || !strings.Contains(string(r.body), "revoked") {
			t.Errorf("%s certificate after reset: %d %s", name, r.code, r.body)
		}
	}
	after := e.login("alice", "new-alice-password")
	after.getcerts()
	if r := after.call("GET", "/user_credit", nil); string(r.body) != "42" {
		t.Fatalf("new certificate: %d %s", r.code, r.body)
	}
	// deluser: the user's certificates stop working; the id is not reused.
	dave := e.login("dave", "dave-password")
	dave.getcerts()
	if _, stderr, code := run(t, "", "deluser", "--config", e.cfg, "dave"); code != 0 {
		t.Fatalf("deluser: %s", stderr)
	}
	exact(t, "deleted user's certificate", dave.call("GET", "/user_credit", nil), 200, ctText, "false")
	if _, stderr, code := run(t, "", "deluser", "--config", e.cfg, "alice"); code != 1 || !strings.Contains(stderr, "the user has 1 VMs: stop their applications first") {
		t.Fatalf("deluser with VMs: %d %s", code, stderr)
	}
}

// newEnvNoCerts is newEnv without `cpsdirector certs`.
func newEnvNoCerts(t *testing.T) *env {
	t.Helper()
	e := newEnv(t, envOpts{})
	os.RemoveAll(filepath.Join(e.dir, "certs"))
	return e
}

// Both of the original's example configurations, filled in as an
// administrator would (EC2 or OpenStack lines uncommented, DIRECTOR_URL as
// cpsconf.py appended it), start the director. The only additions are
// ENDPOINT and AUTH_URL, which point the clouds at the test's fakes.
func TestOriginalConfigs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	port := e.port
	example := fmt.Sprintf(`[conpaas]
# Path to ConPaaS conf dir
CONF_DIR = %[1]s

# Path to certificates
CERT_DIR = %[1]s/certs

# Unique name of the current ConPaaS deployment
DEPLOYMENT_NAME = conpaas-online

# Support for external identity providers
SUPPORT_EXTERNAL_IDP = false

# Maximum credit for new users created through the director's interface /new_user
MAX_CREDIT = 50


[iaas]
# OTHER_CLOUDS = cloud1,cloud2
DRIVER = ec2
USER = %[2]s
PASSWORD = %[3]s
ENDPOINT = %[4]s
SECURITY_GROUP_NAME = conpaas
KEY_NAME = conpaas-key
REGION = ec2.us-east-1.amazonaws.com
IMAGE_ID = ami-0c0ffee0c0ffee000
SIZE_ID = t1.micro

# DRIVER = openstack
# USER = admin
# HOST = 172.16.0.1
# AUTO_ASSIGN_FLOATING_IP = true


[director]
DEBUG = true
DATABASE_URI = sqlite:///%[1]s/director.db
USERDATA_DIR = %[1]s/data
# This is where ConPaaS.tar.gz is expected to be found, as well as the
# decrement credit callback.
DIRECTOR_URL = https://127.0.0.1:%[5]d
`, e.dir, e.ec2.AccessKey, e.ec2.Secret, e.ec2.URL, port)
	multicloud := fmt.Sprintf(`[director]
DEBUG = true
DATABASE_URI = sqlite:///%[1]s/director.db
USERDATA_DIR = %[1]s/data
DIRECTOR_URL = https://127.0.0.1:%[5]d

[conpaas]
CONF_DIR = %[1]s
CERT_DIR = %[1]s/certs
DEPLOYMENT_NAME = conpaas-online
SUPPORT_EXTERNAL_IDP = false


[iaas]
# Our default cloud
DRIVER = openstack
USER = admin
PASSWORD = secret
HOST = 127.0.0.1
AUTH_URL = %[6]s
PROJECT = demo
SECURITY_GROUP_NAME = conpaas
KEY_NAME = conpaas-key
IMAGE_ID = 5f1c6d2e-glance-conpaas
SIZE_ID = m1.small
NETWORK_ID = 7c1b9b1e-0d2a-4b2c-9d1e-2f3a4b5c6d7e
AUTO_ASSIGN_FLOATING_IP = true

# Here we specify the names of our additional clouds
OTHER_CLOUDS = ec2virginia

# We need one section for each cloud name listed in OTHER_CLOUDS

[ec2virginia]
# We want to use EC2 Virginia as one of our additional clouds
DRIVER = ec2
USER = %[2]s
PASSWORD = %[3]s
ENDPOINT = %[4]s
SECURITY_GROUP_NAME = conpaas
KEY_NAME = conpaas-key
REGION = ec2.us-east-1.amazonaws.com
IMAGE_ID = ami-0c0ffee0c0ffee000
SIZE_ID = t1.micro
`, e.dir, e.ec2.AccessKey, e.ec2.Secret, e.ec2.URL, port, e.nova.AuthURL())
	for _, c := range []struct{ name, cfg, clouds string }{
		{"director.cfg.example", example, `["default"]`},
		{"director.cfg.multicloud-example", multicloud, `["default", "ec2virginia"]`},
	} {
		t.Run(c.name, func(t *testing.T) {
			os.WriteFile(e.cfg, []byte(c.cfg), 0o600)
			e.start()
			r := e.login("", "").call("GET", "/available_clouds", nil)
			exact(t, "available_clouds", r, 200, ctText, c.clouds)
			if strings.Contains(e.stderr.String(), "configuration:") {
				t.Errorf("warnings for an original configuration:\n%s", e.stderr)
			}
			e.cmd.Process.Signal(os.Interrupt)
			<-e.done
		})
	}
}
