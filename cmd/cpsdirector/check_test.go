package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.start()
	e.nova.SetClockOffset(-11 * time.Minute)
	out, _, code := run(t, "", "check", "--config", e.cfg)
	if code != 1 {
		t.Fatalf("check exit %d:\n%s", code, out)
	}
	wantLines(t, out,
		"ok      server certificate     commonName and SAN are 127.0.0.1",
		"ok      database               "+filepath.Join(e.dir, "director.db")+" is writable",
		"PROBLEM cloud iaas clock       local clock is 11m",
		"fix: set the time, e.g. `ntpdate 0.us.pool.ntp.org`",
		"ok      cloud iaas credentials accepted by openstack",
		"ok      cloud iaas image       5f1c6d2e-glance-conpaas (catalogue:conpaas) is available",
		`PROBLEM cloud iaas security group "conpaas" does not open TCP 80, 8000, 8080, 9000, 3306, 4444, 4567, 4568, 32636, 32638, 32640, 22, 6121, 6122, 6123, 6130, 8081`,
		"ok      cloud aws credentials  accepted by ec2",
		"ok      cloud aws image        ami-0c0ffee0c0ffee000 (IMAGE_ID) is available",
		"ok      ConPaaS.tar.gz         downloaded ")

	// Fix the clock and let check open the ports: clean bill of health.
	e.nova.SetClockOffset(0)
	out, _, code = run(t, "", "check", "--config", e.cfg, "--fix-security-groups")
	if code != 0 || !strings.Contains(out, `ok      cloud iaas security group "conpaas" opens every ConPaaS port`) || !strings.HasSuffix(out, "no problems found\n") {
		t.Fatalf("after fix: %d\n%s", code, out)
	}
	if g := e.ec2.Groups["us-east-1/conpaas"]; !g.TCPPorts[3306] || !g.TCPPorts[8081] || !g.TCPPorts[32636] {
		t.Errorf("--fix-security-groups did not open the ConPaaS ports on EC2: %v", g.TCPPorts)
	}

	// Image deleted from the cloud, wrong password, unknown host in
	// DIRECTOR_URL, database unusable, an unknown key, tarball gone.
	e.nova.DeleteImage("5f1c6d2e-glance-conpaas")
	out, _, _ = run(t, "", "check", "--config", e.cfg)
	wantLines(t, out, "PROBLEM cloud iaas image       image 5f1c6d2e-glance-conpaas (catalogue:conpaas) does not exist in the cloud; fix: re-register the image")

	cfg, _ := os.ReadFile(e.cfg)
	cfg = bytes.Replace(cfg, []byte("https://127.0.0.1:"), []byte("https://localhost:"), 1)
	cfg = bytes.Replace(cfg, []byte("PASSWORD = secret"), []byte("PASSWORD = wrong\nFLAVOUR = m1.tiny"), 1)
	badDB := filepath.Join(e.dir, "ConPaaS.tar.gz", "director.db")
	cfg = bytes.Replace(cfg, []byte("DATABASE_URI = "+e.dbURI), []byte("DATABASE_URI = sqlite:///"+badDB), 1)
	os.WriteFile(e.cfg, cfg, 0o600)
	out, _, code = run(t, "", "check", "--config", e.cfg)
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	wantLines(t, out,
		`PROBLEM server certificate     certificate commonName is "127.0.0.1" but DIRECTOR_URL's host is "localhost"; fix: run `+"`cpsdirector certs`",
		"PROBLEM database               "+badDB+" is not writable",
		"PROBLEM configuration          "+e.cfg+":12: unknown key FLAVOUR in [iaas] is ignored",
		"PROBLEM cloud iaas credentials openstack authenticate: credentials rejected",
		"fix: fix USER/PASSWORD/PROJECT/DOMAIN in [iaas] (line 8 of",
		"PROBLEM ConPaaS.tar.gz         cannot download https://localhost:")
	os.Remove(filepath.Join(e.dir, "ConPaaS.tar.gz"))
	out, _, _ = run(t, "", "check", "--config", e.cfg)
	wantLines(t, out, "PROBLEM ConPaaS.tar.gz         "+filepath.Join(e.dir, "ConPaaS.tar.gz")+" is missing")
}

func wantLines(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}
