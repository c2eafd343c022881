package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The client with cps-tools' grammar and configuration file, against the
// real director: a script written for cps-tools works with
// `cpsdirector client` in its place.
func TestClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.start()
	home := t.TempDir()
	os.MkdirAll(filepath.Join(home, ".conpaas"), 0o700)
	// cps-tools.conf as cps-tools documented it; the port is added as
	// its set_director_url did (5555 when absent: here it is given).
	os.WriteFile(filepath.Join(home, ".conpaas", "cps-tools.conf"), []byte(fmt.Sprintf(`[cps-tools]
director_url = %s
username = alice
password = alice-password
`, e.url)), 0o600)
	ca, _ := os.ReadFile(filepath.Join(e.dir, "certs", "ca_cert.pem"))
	sum := sha256.Sum256(leafOf(t, ca).Raw)
	fp := hex.EncodeToString(sum[:])
	cps := func(stdin string, args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"client"}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+home, fmt.Sprintf("CPS_MANAGER_PORT=%d", e.vms.managerPort))
		cmd.Stdin = strings.NewReader(stdin)
		var o, er bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &er
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return o.String(), er.String(), code
	}
	ok := func(want string, args ...string) string {
		t.Helper()
		out, errOut, code := cps("", args...)
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("client %v: %d\n%s%s\nwant %q", args, code, out, errOut, want)
		}
		return out
	}
	// No CA yet: the first contact needs its fingerprint.
	if _, errOut, code := cps("", "user", "create_free", "alice", "--email", "alice@example.org", "--credit", "10", "--password", "x"); code == 0 || !strings.Contains(errOut, "get_certificate") {
		t.Fatalf("create_free without a CA: %d %s", code, errOut)
	}
	if _, errOut, code := cps("", "user", "get_certificate", "--trust-ca", strings.Repeat("0", 64)); code == 0 || !strings.Contains(errOut, "not trusting the director's CA (SHA-256 "+fp+")") {
		t.Fatalf("wrong fingerprint: %d %s", code, errOut)
	}
	// The CA alone (cpsdirector certs prints its fingerprint).
	os.WriteFile(filepath.Join(home, ".conpaas", "ca_cert.pem"), ca, 0o600)
	ok("User 'alice' created successfully.", "user", "create_free", "alice", "--email", "alice@example.org", "--credit", "10", "--password", "alice-password")
	os.Remove(filepath.Join(home, ".conpaas", "ca_cert.pem"))
	ok("User certificates installed successfully.", "user", "get_certificate", "--trust-ca", fp)
	for _, f := range []string{"cert.pem", "key.pem", "ca_cert.pem"} {
		if st, err := os.Stat(filepath.Join(home, ".conpaas", f)); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, st, err)
		}
	}
	ok("10\n", "user", "get_credit")
	ok("username: alice\n", "user", "get_config")
	ok("default\naws\n", "cloud", "list")
	ok("ConPaaS director version 2.0.0-cps\n", "director", "version")
	ok("php\njava\nhelloworld\nxtreemfs\nmysql\ngeneric\n", "service", "get_types")
	ok("Application 'shop' created with id 2.\n", "application", "create", "shop")
	ok("aid name            manager cloud status\n----------------------------------------\n  1 New Application None    None  INIT  \n  2 shop            None    None  INIT  ", "application", "list")
	if _, errOut, code := cps("", "application", "start", "shop", "-c", "mars"); code != 1 || !strings.Contains(errOut, "ERROR: Unknown cloud name 'mars'") {
		t.Fatalf("unknown cloud: %d %s", code, errOut)
	}
	ok("Application 'shop' with id 2 is starting... done.\n", "application", "start", "shop")
	ok("Service php successfully added to application 2 with id 1.\n", "service", "add", "php", "shop")
	ok("aid sid type name           \n----------------------------\n  2   1 php  New php service", "service", "list")
	ok("Service 1 of application 2 has been renamed to 'front'.\n", "php", "rename", "shop", "1", "front")
	ok("state: RUNNING\n", "service", "get_state", "shop", "front")
	ok("Service 1 of application 2 is starting... done.\n", "service", "start", "shop", "front")
	ok("  2   1 backend iaas2   ", "service", "list_nodes", "shop", "1")
	ok("role    cloud  \n", "cloud", "list_resources")
	ok("Application 'shop' with id 2 was stopped.\n", "application", "stop", "2")
	ok("Application with id 2 has been renamed from 'shop' to 'store'.\n", "application", "rename", "shop", "store")
	ok("Application 'store' with id 2 has been deleted.\n", "application", "delete", "store")
	if _, errOut, code := cps("", "application", "delete", "store"); code != 1 || !strings.Contains(errOut, "Unknown application name 'store'") {
		t.Fatalf("delete twice: %d %s", code, errOut)
	}
	// On the director's machine: users and credit straight in its database.
	ok("Credit added successfully to user 'alice', the new credit is 14.\n", "user", "add_credit", "alice", "5", "--config", e.cfg)
	ok("alice\t14\n", "user", "list", "--credit", "--config", e.cfg)
	ok("User 'bob' created successfully.\n", "user", "create", "bob", "--email", "bob@example.org", "--password", "bob-password", "--config", e.cfg)
	// Global options override the file.
	if _, errOut, code := cps("", "--password", "wrong", "--username", "bob", "user", "get_certificate"); code != 1 || !strings.Contains(errOut, "ERROR: User authentication failed") {
		t.Fatalf("wrong password: %d %s", code, errOut)
	}
}
