package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The manager context the director sends does what a ConPaaS manager VM
// needs, run for real by bash: it finds its address at the metadata
// service, installs the certificates, downloads ConPaaS.tar.gz from the
// director verified with the CA, writes config.cfg and starts
// sbin/manager/default-cpsmanager with it. The VM's absolute paths are
// moved into a directory of the test, and the metadata service is one
// the test serves.
func TestManagerContextRuns(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.start()
	alice := newUserWithCerts(t, e, "alice", 5)
	ids := createApps(t, alice, 1)
	exact(t, "startapp", alice.call("POST", "/startapp/"+ids[0], nil), 200, ctJSON, "{}")
	waitFor(t, 60*time.Second, "the manager VM", func() bool { return len(e.nova.Servers()) == 1 })
	ud := string(e.nova.Servers()[0].UserData)

	meta := http.NewServeMux()
	meta.HandleFunc("/latest/meta-data/public-ipv4", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "203.0.113.7") })
	meta.HandleFunc("/latest/meta-data/local-ipv4", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "10.1.2.3") })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: meta}
	go srv.Serve(ln)
	defer srv.Close()

	vm := t.TempDir()
	for _, d := range []string{"root", "tmp", "etc", "var/log", "var/tmp", "var/cache", "var/run"} {
		os.MkdirAll(filepath.Join(vm, d), 0o755)
	}
	script := strings.NewReplacer(
		"http://169.254.169.254", "http://"+ln.Addr().String(),
		"/var/tmp/", vm+"/var/tmp/", "/var/cache/", vm+"/var/cache/", "/var/run/", vm+"/var/run/", "/var/log/", vm+"/var/log/",
		" /tmp/", " "+vm+"/tmp/", "ROOT_DIR=/root", "ROOT_DIR="+vm+"/root", "ETC=/etc/", "ETC="+vm+"/etc/",
	).Replace(ud)
	if regexp.MustCompile(`169\.254\.169\.254|\s/tmp/(cert|key|ca_cert)\.pem|=/root|=/etc/`).MatchString(script) {
		t.Fatalf("sandboxing left a path of the VM in the script:\n%s", script)
	}
	cmd := exec.Command("bash", "-c", script)
	cmd.Env = append(os.Environ(), "PATH=/usr/bin:/bin:/usr/sbin:/sbin")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("context script: %v\n%s", err, out)
	}
	waitFor(t, 10*time.Second, "the manager to start", func() bool {
		_, err := os.Stat(filepath.Join(vm, "root", "ConPaaS", "started"))
		return err == nil
	})
	started, _ := os.ReadFile(filepath.Join(vm, "root", "ConPaaS", "started"))
	if strings.TrimSpace(string(started)) != "-c "+vm+"/root/config.cfg" {
		t.Fatalf("manager started with %q", started)
	}
	cfg, _ := os.ReadFile(filepath.Join(vm, "root", "config.cfg"))
	for _, want := range []string{"[manager]\n", "USER_ID = ", "APP_ID = " + ids[0] + "\n", "MY_IP = 203.0.113.7\n",
		"DIRECTOR_URL = " + e.url + "\n", "CERT_DIR = " + vm + "/etc/cpsmanager/certs\n", "CONPAAS_HOME = " + vm + "/root/ConPaaS\n"} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("config.cfg lacks %q:\n%s", want, cfg)
		}
	}
	for _, f := range []string{"cert.pem", "key.pem", "ca_cert.pem"} {
		if _, err := os.Stat(filepath.Join(vm, "etc", "cpsmanager", "certs", f)); err != nil {
			t.Errorf("certificate %s not installed: %v", f, err)
		}
	}
	if st, err := os.Stat(filepath.Join(vm, "etc", "cpsmanager", "certs", "key.pem")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key.pem mode: %v %v", st, err)
	}
	if pid, err := os.ReadFile(filepath.Join(vm, "root", "manager.pid")); err != nil || strings.TrimSpace(string(pid)) == "" {
		t.Errorf("no manager.pid: %v", err)
	}
}
