package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/conpaas/cps/cmd/cpsdirector/internal/certs"
)

func TestStartupErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	cfg, _ := os.ReadFile(e.cfg)
	for _, tc := range []struct {
		name     string
		edit     func([]byte) []byte
		catalog  string
		wantCode int
		want     string
	}{
		{name: "no matching image", catalog: `{"schema_version":1,"artifacts":[{"name":"conpaas","version":"2.1.0","kind":"raw","arch":"amd64","file":"f","size":1,"md5":"c6017f277f01777121dae3f2fb085e92","sha256":"5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03","built":"2024-01-01T00:00:00Z","registrations":[{"cloud":"openstack","target":"glance","cloud_name":"othercloud","image_id":"x","time":"2024-01-01T00:00:00Z"}]}]}`,
			wantCode: 2, want: "cloud iaas: IMAGE = catalogue:conpaas is not registered for openstack cloud devstack region RegionOne (amd64) (registered: 2.1.0 openstack othercloud)"},
		{name: "broken catalogue", catalog: "{\n\"schema_version\": 1,\n\"artifacts\": [}\n", wantCode: 2, want: "catalogue.json: line 3"},
		{name: "bad credentials", edit: func(b []byte) []byte {
			return bytes.Replace(b, []byte("PASSWORD = secret"), []byte("PASSWORD = nope"), 1)
		},
			wantCode: 1, want: "cloud iaas (openstack, line 8 of"},
		{name: "unreachable database", edit: func(b []byte) []byte {
			return regexp.MustCompile(`DATABASE_URI = .*`).ReplaceAll(b, []byte("DATABASE_URI = mysql://cps:pw@127.0.0.1:1/cps"))
		}, wantCode: 1, want: "connect to database mysql://cps:xxxxx@127.0.0.1:1/cps:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			if tc.edit != nil {
				c = tc.edit(c)
			}
			os.WriteFile(e.cfg, c, 0o600)
			cat := catalogueJSON
			if tc.catalog != "" {
				cat = tc.catalog
			}
			os.WriteFile(filepath.Join(e.dir, "catalogue.json"), []byte(cat), 0o644)
			_, stderr, code := run(t, "", "serve", "--config", e.cfg)
			if code != tc.wantCode || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant %d and %q", code, stderr, tc.wantCode, tc.want)
			}
			if strings.Contains(stderr, "pw@") {
				t.Fatalf("password in the error: %s", stderr)
			}
		})
	}
	// A config syntax error names the line, for every command.
	dir := t.TempDir()
	p := filepath.Join(dir, "director.cfg")
	os.WriteFile(p, []byte("[director]\nDIRECTOR_URL = https://h\n[iaas]\nDRIVER ec2\n"), 0o600)
	for _, c := range []string{"serve", "certs", "images", "check", "adduser", "deluser"} {
		args := []string{c, "--config", p}
		if strings.HasSuffix(c, "user") {
			args = append(args, "someone")
		}
		_, stderr, code := run(t, "long-enough-pw\n", args...)
		if code != 2 || !strings.Contains(stderr, p+":4: expected KEY = value") {
			t.Errorf("%s: exit %d %s", c, code, stderr)
		}
	}
	_, stderr, code := run(t, "", "serve", "--config", filepath.Join(dir, "missing.cfg"))
	if code != 2 || !strings.Contains(stderr, filepath.Join(dir, "missing.cfg")+" does not exist: copy the example cmd/cpsdirector/director.cfg.example of the cps source tree there") {
		t.Errorf("missing config: %d %s", code, stderr)
	}
}

func TestCertsReissueAndImages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	caBefore, _ := os.ReadFile(filepath.Join(e.dir, "certs", "ca_cert.pem"))
	// The CA and director certificate have the original's subjects: CN=CA
	// (managers and clients recognise the CA by it) and role=frontend.
	ca := leafOf(t, caBefore)
	if f := certs.Fields(ca); f != (certs.Name{CN: "CA", O: "ConPaaS", Email: "info@conpaas.eu"}) || !ca.IsCA {
		t.Fatalf("CA subject %+v", f)
	}
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
	if f := certs.Fields(leaf); f != (certs.Name{CN: "director.example.org", O: "ConPaaS", Email: "info@conpaas.eu", Role: "frontend"}) || len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "director.example.org" {
		t.Fatalf("leaf %+v %v", f, leaf.DNSNames)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "director.example.org"}); err != nil {
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
	// An empty catalogue: the error names it; the table lists only the
	// clouds that resolved.
	cat := filepath.Join(e.dir, "catalogue.json")
	os.WriteFile(cat, []byte(`{"schema_version":1,"artifacts":[]}`), 0o644)
	out, stderr, code = run(t, "", "images", "--config", e.cfg)
	if code != 2 || strings.Contains(out, "iaas") || !strings.Contains(stderr, "catalogue "+cat+": cloud iaas: IMAGE = catalogue:conpaas but the catalogue is empty") {
		t.Errorf("images with an empty catalogue: exit %d, stdout %q, stderr %s", code, out, stderr)
	}
}

func TestAddUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	for _, c := range []struct {
		stdin, user string
		args        []string
		code        int
		msg         string
	}{
		{"long-enough-pw\n", "alice", nil, 0, "added user alice (id 1, credit 50)"},
		{"short\n", "carol", nil, 2, "password too short"},
		{"", "carol", nil, 2, "no password on standard input"},
		{"long-enough-pw\n", "alice", nil, 1, `user "alice" (or a look-alike name) already exists`},
		{"long-enough-pw\n", "ALİCE", nil, 1, "look-alike"},
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
	// cpsadduser.py's argument form: email username password [credit].
	if out, stderr, code := run(t, "", "adduser", "--config", e.cfg, "bob@example.org", "bob", "bob-password", "7"); code != 0 || !strings.Contains(out, "added user bob (id 2, credit 7)") {
		t.Fatalf("cpsadduser.py form: %d %s %s", code, out, stderr)
	}
	// Flags after USERNAME, as the usage's order suggests to nobody but
	// people type anyway: "adduser --reset ghost --password-stdin" took
	// --password-stdin for a second name ("adduser needs USERNAME"). A
	// dash-led password in the legacy form, and a negative CREDIT, stay
	// values.
	for _, c := range []struct {
		stdin string
		args  []string
		msg   string
	}{
		{"", []string{"adduser", "--config", e.cfg, "eve", "--credit", "9", "--password-stdin"}, "added user eve (id 3, credit 9)"},
		{"", []string{"adduser", "--config", e.cfg, "fay@example.org", "fay", "-dash-led-password"}, "added user fay (id 4"},
		{"", []string{"credit", "--config", e.cfg, "eve", "-4"}, "the new credit is 5."},
		{"", []string{"credit", "eve", "-1", "--config", e.cfg}, "the new credit is 4."},
	} {
		stdin := c.stdin
		if stdin == "" && c.args[0] == "adduser" && c.args[len(c.args)-1] == "--password-stdin" {
			stdin = "eve-long-password\n"
		}
		if out, stderr, code := run(t, stdin, c.args...); code != 0 || !strings.Contains(out+stderr, c.msg) {
			t.Errorf("%v: %d %s%s, want %q", c.args, code, out, stderr, c.msg)
		}
	}
	// The password is hashed with bcrypt, never stored.
	db, _ := os.ReadFile(filepath.Join(e.dir, "director.db"))
	wal, _ := os.ReadFile(filepath.Join(e.dir, "director.db-wal"))
	all := append(db, wal...)
	if bytes.Contains(all, []byte("alice-password")) || !bytes.Contains(all, []byte("$2a$11$")) {
		t.Error("password not bcrypt-hashed in the database")
	}
}

// TestImagesWithoutClouds: with no cloud configured (or none resolved),
// images --json printed `null`, which scripts reading a list choke on
// (jq '.[]': "Cannot iterate over null"), and the table printed nothing at
// all, exit 0, as if everything were fine.
func TestImagesWithoutClouds(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "director.cfg")
	os.WriteFile(p, []byte("[director]\nDIRECTOR_URL = https://h\n"), 0o600)
	for _, c := range []struct {
		args             []string
		stdout, inStderr string
	}{
		{[]string{"images", "--config", p, "--json"}, "[]\n", ""},
		{[]string{"images", "--config", p}, "", "no cloud is configured in " + p + ": set DRIVER in [iaas]"},
	} {
		out, stderr, code := run(t, "", c.args...)
		if code != 0 || out != c.stdout || !strings.Contains(stderr, c.inStderr) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", c.args, code, out, stderr)
		}
	}
}
