//go:build e2e

package boot

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/conpaas/cps/images/catalogue"
	"github.com/conpaas/cps/internal/testutil"
	"github.com/conpaas/cps/test/qemu"
	"github.com/conpaas/cps/test/userdatafixture"
)

// nutshellIP is the appliance's address on the host-only network (the
// template's default nutshell_ip), where its director listens.
const nutshellIP = "192.168.56.10"

// fakeManager is sbin/manager/default-cpsmanager of the test's
// ConPaaS.tar.gz (the director's user data starts TYPE "default"): it
// calls the director back with the manager certificate the user data
// installed, on two routes of the original protocol (/credit, whose
// answer is the user's credit, and /callback/decrementUserCredit.php,
// taking 3 credits the test then misses), and answers the director's
// check_process on port 443 with that certificate, as a manager does.
// What it does goes to /dev/console, which Nova's console log shows.
const fakeManager = `#!/bin/sh
c=/etc/cpsmanager/certs
d=$(sed -n 's/^DIRECTOR_URL *= *//p' /root/config.cfg)
# libvirt's console pty is drained only when Nova reads the console log
# (the test's watcher, every 20 s): a write may wait that long.
say() { printf 'fake manager: %s\n' "$*"; printf 'fake manager: %s\n' "$*" | timeout 90 tee /dev/console > /dev/null; }
say "started: $*"
r=$(curl -sS --max-time 60 --cacert $c/ca_cert.pem --cert $c/cert.pem --key $c/key.pem -X POST -d "" $d/credit 2>&1)
say "/credit answered $r"
r=$(curl -sS --max-time 60 --cacert $c/ca_cert.pem --cert $c/cert.pem --key $c/key.pem -d decrement=3 $d/callback/decrementUserCredit.php 2>&1)
say "/callback/decrementUserCredit.php answered $r"
say "serving check_process on 443"
exec python3 -c '
import http.server, json, ssl
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b = json.dumps({"result": {"state": "RUNNING"}, "error": None, "id": "1"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    do_POST = do_GET
s = http.server.HTTPServer(("", 443), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("/etc/cpsmanager/certs/cert.pem", "/etc/cpsmanager/certs/key.pem")
s.socket = ctx.wrap_socket(s.socket, server_side=True)
s.serve_forever()
'
`

// watchScript runs on the Nutshell for the whole test (one Python, so
// openstacksdk is imported once: a minute under TCG) and prints one JSON
// line every 20 s: the servers Nova has with their image, state, libvirt
// domain and host, the hypervisors' type, libvirt's LXC domains, the end
// of each server's console log (reading it also drains the container's
// console), and the director's journal. Fetching the console log keeps
// the container's /dev/console flowing: libvirt's pty is read only then.
const watchScript = `
import json, os, subprocess, sys, time
import openstack
env = dict(l.strip().split("=", 1) for l in open("/etc/conpaas-nutshell/env") if "=" in l)
ip = env.get("NUTSHELL_IP", "192.168.56.10")
# The director's journal from now on: a resumed appliance has earlier runs' in it.
since = time.strftime("%Y-%m-%d %H:%M:%S")
conn = openstack.connect(auth_url="http://%s:5000/v3" % ip, username="admin", password=env["NUTSHELL_PASSWORD"],
    project_name="demo", user_domain_name="Default", project_domain_name="Default", region_name="RegionOne",
    identity_api_version="3")
while True:
    st = {"servers": [], "error": ""}
    try:
        st["hypervisors"] = [str(h.hypervisor_type).lower() for h in conn.compute.hypervisors(details=True)]
        for s in conn.compute.servers(details=True, all_projects=True):
            img = s.image
            iid = getattr(img, "id", None) or (img.get("id") if isinstance(img, dict) else None)
            d = {"id": s.id, "name": s.name, "status": s.status, "task": s.task_state, "vm_state": s.vm_state,
                 "image": iid, "instance": s.instance_name, "host": s.hypervisor_hostname,
                 "addresses": s.addresses, "fault": str(getattr(s, "fault", None) or "")}
            if s.status == "ACTIVE":
                try:
                    d["console"] = conn.compute.get_server_console_output(s).get("output", "")
                except Exception as e:
                    d["console"] = "(console log: %s)" % e
            st["servers"].append(d)
    except Exception as e:
        st["error"] = str(e)
    st["virsh"] = subprocess.run(["virsh", "-c", "lxc:///system", "list", "--all", "--name"], capture_output=True, text=True).stdout.split()
    st["director"] = subprocess.run(["journalctl", "-u", "cpsdirector", "--since", since, "-o", "cat", "--no-pager"], capture_output=True, text=True).stdout[-200000:]
    print(json.dumps(st), flush=True)
    time.sleep(20)
`

// nutshellState is one line of watchScript.
type nutshellState struct {
	Servers []struct {
		ID, Name, Status, Task, VMState, Image, Instance, Host, Fault, Console string
		Addresses                                                              map[string]any
	}
	Hypervisors []string
	Virsh       []string
	Director    string
	Error       string
}

// TestNutshellService runs the chain ConPaaS exists for inside ConPaaS in a
// Nutshell: the appliance, built from its example template (with the LXC
// services image in it) and booted under QEMU as TestNutshell does, comes
// up with that image in Glance and in the director's catalogue; with a
// test ConPaaS.tar.gz installed on the director, a client creates and
// starts an application through the director's HTTPS API; Nova starts an
// LXC instance from the catalogue's image; the instance contextualizes
// from Neutron's metadata service, downloads ConPaaS.tar.gz verified with
// the director's CA and starts the manager, which calls the director back
// with its manager certificate and answers check_process (the application
// goes RUNNING); stopping the application deletes the instance. Each step
// reached is printed as "chain: ..." so a failure says where it broke.
//
// CPS_NUTSHELL_DIR names a directory to build in and keep (a second run
// with the same directory boots the same build); CPS_NUTSHELL_CONSOLE a
// file to follow the serial console in.
func TestNutshellService(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tool := range []string{"mmdebstrap", "qemu-system-x86_64", "qemu-img", "ssh", "ssh-keygen", "nc"} {
		testutil.RequireTool(t, tool)
	}
	began := time.Now()
	step := func(format string, a ...any) {
		msg := fmt.Sprintf("chain: "+format, a...)
		fmt.Fprintf(os.Stderr, "%s [%s]\n", msg, time.Since(began).Round(time.Second))
		t.Log(msg)
	}
	root := repoRoot(t)
	dir := os.Getenv("CPS_NUTSHELL_DIR")
	// keep: the build and the first boot stay in dir for the next run.
	keep := dir != ""
	if !keep {
		dir = t.TempDir()
	}
	key := filepath.Join(dir, "id_ed25519")
	disk := filepath.Join(dir, "nutshell-disk.img")
	// With CPS_NUTSHELL_DIR, the first boot's writes go to an overlay kept
	// there (booted.ready marks a first boot that reached "ready"), so a
	// second run resumes after it instead of spending 20 minutes again.
	overlay, bootedMark := filepath.Join(dir, "booted.qcow2"), filepath.Join(dir, "booted.ready")
	if _, err := os.Stat(disk); err != nil {
		os.Remove(overlay)
		os.Remove(bootedMark)
		buildNutshell(t, root, dir, key)
		step("1/9 built the Nutshell with the LXC services image (%s)", time.Since(began).Round(time.Second))
	} else {
		step("1/9 reusing the Nutshell built in %s", dir)
	}
	cat, err := catalogue.Load(filepath.Join(dir, "catalogue.json"))
	if err != nil {
		t.Fatal(err)
	}
	lxc := cat.Find("conpaas-lxc")
	if lxc == nil || lxc.Kind != "lxc" {
		t.Fatalf("the build's catalogue has no lxc image conpaas-lxc: %+v", cat.Artifacts)
	}

	sshPort, dirPort := testutil.FreePort(t), testutil.FreePort(t)
	accel, timeout := "tcg", 180*time.Minute
	if os.Getenv("CPS_QEMU_ACCEL") == "kvm" {
		accel, timeout = "kvm", 60*time.Minute
	}
	resumed := false
	if keep {
		if _, err := os.Stat(bootedMark); err == nil {
			resumed = true
		} else {
			os.Remove(overlay)
			if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", disk, overlay).CombinedOutput(); err != nil {
				t.Fatalf("qemu-img create: %v\n%s", err, out)
			}
		}
	}
	opts := qemu.Options{Image: disk, MemoryMiB: 4096, CPUs: 2, Accel: accel, Timeout: timeout,
		NICs: []qemu.NIC{{}, {Net: "192.168.56.0/24", Host: "192.168.56.1", HostForwards: []qemu.HostForward{
			{Host: fmt.Sprintf("127.0.0.1:%d", sshPort), Guest: nutshellIP + ":22"},
			{Host: fmt.Sprintf("127.0.0.1:%d", dirPort), Guest: nutshellIP + ":5555"},
		}}}}
	if keep {
		opts.Image, opts.Format, opts.Writable = overlay, "qcow2", true
	}
	if p := os.Getenv("CPS_NUTSHELL_CONSOLE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		opts.Console = f
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	vm, err := qemu.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Stop()
	sh := &nutshellSSH{t: t, key: key, port: sshPort}
	// CPS_NUTSHELL_HOLD keeps a failed run's appliance up (runs before
	// vm.Stop) until the file it names is removed, to look inside.
	defer func() {
		if !t.Failed() || os.Getenv("CPS_NUTSHELL_HOLD") == "" {
			return
		}
		hold := filepath.Join(dir, "hold")
		os.WriteFile(hold, nil, 0o644)
		fmt.Fprintf(os.Stderr, "holding the Nutshell: ssh -i %s -p %d root@127.0.0.1 (director on 127.0.0.1:%d); rm %s to end\n", key, sshPort, dirPort, hold)
		for ctx.Err() == nil {
			if _, err := os.Stat(hold); err != nil {
				return
			}
			time.Sleep(5 * time.Second)
		}
	}()
	if resumed {
		// The setup ran in an earlier run: wait for its services instead.
		booted := time.Now()
		for {
			out, err := sh.run(ctx, nil, "systemctl is-active cpsdirector nova-compute neutron-dhcp-agent neutron-metadata-agent neutron-linuxbridge-agent >/dev/null && conpaas-nutshell-openstack wait-compute && conpaas-nutshell-openstack wait-dhcp")
			if err == nil {
				break
			}
			if ctx.Err() != nil || time.Since(booted) > 60*time.Minute {
				t.Fatalf("the resumed Nutshell's services are not up after %s: %v\n%s", time.Since(booted).Round(time.Second), err, out)
			}
			time.Sleep(30 * time.Second)
		}
		step("2/9 resumed the Nutshell booted in an earlier run (%s): services up after %s", accel, time.Since(booted).Round(time.Second))
	} else {
		r, err := vm.Wait(ctx, regexp.MustCompile(`conpaas-nutshell: (ready|setup FAILED)`), 0)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(r.Line, "setup FAILED") {
			t.Fatalf("first boot (%s) failed after %s: %s\n%s", accel, r.Elapsed.Round(time.Second), r.Line, testutil.Tail(r.Console, 80))
		}
		if keep {
			os.WriteFile(bootedMark, nil, 0o644)
		}
		step("2/9 first boot (%s) ready after %s: %s", accel, r.Elapsed.Round(time.Second), r.Line)
	}
	// The setup registered the image in Glance, as Nova's LXC driver takes
	// it, and wrote the director's catalogue.
	var reg struct {
		Catalogue catalogue.Catalogue
		Image     map[string]any
	}
	out, err := sh.run(ctx, nil, `python3 - <<'EOF'
import json, openstack
env = dict(l.strip().split("=", 1) for l in open("/etc/conpaas-nutshell/env") if "=" in l)
cat = json.load(open("/etc/cpsdirector/catalogue.json"))
conn = openstack.connect(auth_url="http://%s:5000/v3" % env["NUTSHELL_IP"], username="admin", password=env["NUTSHELL_PASSWORD"],
    project_name="admin", user_domain_name="Default", project_domain_name="Default", identity_api_version="3")
img = conn.image.get_image(cat["artifacts"][0]["registrations"][0]["image_id"])
print(json.dumps({"catalogue": cat, "image": {"id": img.id, "name": img.name, "status": img.status, "disk_format": img.disk_format,
    "container_format": img.container_format, "checksum": img.checksum, "hypervisor_type": img.hypervisor_type or (img.properties or {}).get("hypervisor_type"),
    "visibility": img.visibility}}))
EOF`)
	if err != nil {
		t.Fatalf("reading the Nutshell's catalogue and Glance image: %v\n%s", err, out)
	}
	if err := json.Unmarshal(lastLine(out), &reg); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(reg.Catalogue.Artifacts) != 1 || len(reg.Catalogue.Artifacts[0].Registered) != 1 {
		t.Fatalf("the director's catalogue: %s", out)
	}
	art := reg.Catalogue.Artifacts[0]
	imageID := art.Registered[0].ImageID
	// Expected values: the build's own catalogue entry (MD5 of the bytes
	// built) and what docs/lxc.md says Nova's LXC driver needs.
	want := map[string]any{"id": imageID, "name": "conpaas-lxc", "status": "active", "disk_format": "raw", "container_format": "bare",
		"checksum": lxc.MD5, "hypervisor_type": "lxc", "visibility": "public"}
	for k, v := range want {
		if reg.Image[k] != v {
			t.Errorf("Glance image %s = %v, want %v", k, reg.Image[k], v)
		}
	}
	if art.Name != lxc.Name || art.Version != lxc.Version || art.MD5 != lxc.MD5 || art.SHA256 != lxc.SHA256 || art.Registered[0].Cloud != "openstack" {
		t.Errorf("the director's catalogue entry %+v differs from the build's %+v", art, *lxc)
	}
	if t.Failed() {
		t.FailNow()
	}
	step("3/9 Glance holds %s %s as image %s (raw, bare, hypervisor_type=lxc, MD5 %s as built) and the director's catalogue names it", art.Name, art.Version, imageID, lxc.MD5)

	// The test's ConPaaS.tar.gz, where the director serves it from.
	tgz := userdatafixture.Tarball(t, "ConPaaS/sbin/manager/default-cpsmanager", fakeManager)
	if out, err := sh.run(ctx, bytes.NewReader(tgz), "cat > /etc/cpsdirector/ConPaaS.tar.gz.tmp && mv /etc/cpsdirector/ConPaaS.tar.gz.tmp /etc/cpsdirector/ConPaaS.tar.gz && cat /etc/cpsdirector/certs/ca_cert.pem"); err != nil {
		t.Fatalf("installing ConPaaS.tar.gz: %v\n%s", err, out)
	} else {
		step("4/9 installed a test ConPaaS.tar.gz (%d bytes) on the director", len(tgz))
		sh.caPEM = out
	}
	watch := sh.watch(ctx)

	// A client of the director, through QEMU's forward of its port.
	cl := newDirectorClient(t, sh.caPEM, dirPort)
	// A resumed appliance may hold an earlier run's user and instances.
	user := fmt.Sprintf("e2e%d", time.Now().Unix()%1000000)
	pre := map[string]bool{}
	if st := watch.first(ctx); st != nil {
		for _, s := range st.Servers {
			pre[s.ID] = true
		}
	}
	if _, err := cl.form(ctx, "new_user", url.Values{"username": {user}, "password": {"e2e-secret"}, "email": {user + "@example.org"}, "credit": {"20"}}, false); err != nil {
		t.Fatal(err)
	}
	if err := cl.certs(ctx, user, "e2e-secret"); err != nil {
		t.Fatal(err)
	}
	credit := func() float64 {
		v, err := cl.form(ctx, "user_credit", nil, true)
		if err != nil {
			t.Fatal(err)
		}
		f, _ := v.(float64)
		return f
	}
	app, err := cl.form(ctx, "createapp", url.Values{"name": {"e2e"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := app.(map[string]any)
	aid := fmt.Sprint(m["aid"])
	before := credit()
	if v, err := cl.form(ctx, "startapp/"+aid, url.Values{}, true); err != nil {
		t.Fatalf("startapp: %v %v", err, v)
	}
	step("5/9 client: new_user %s, getcerts, createapp %s, startapp (credit %v)", user, aid, before)

	// The instance: created by Nova from the catalogue's image, as an LXC
	// domain, and its contextualization, followed until the application
	// runs (or fails).
	var (
		st          nutshellState
		server      string
		sawInstance bool
		// instanceName is the instance's libvirt domain.
		instanceName string
	)
	status, vmid := "", ""
	deadline := time.Now().Add(60 * time.Minute)
	for time.Now().Before(deadline) {
		st = watch.latest()
		for _, s := range st.Servers {
			if pre[s.ID] {
				continue
			}
			if !sawInstance && s.Image == imageID && s.Status == "ACTIVE" && contains(st.Virsh, s.Instance) && contains(st.Hypervisors, "lxc") {
				sawInstance, server, instanceName = true, s.ID, s.Instance
				step("6/9 Nova runs instance %s (%s) from image %s as LXC domain %s on %s, addresses %v", s.Name, s.ID, imageID, s.Instance, s.Host, s.Addresses)
			}
			if s.Status == "ERROR" {
				t.Fatalf("Nova: instance %s in ERROR: %s", s.Name, s.Fault)
			}
		}
		apps, err := cl.form(ctx, "listapp", nil, true)
		if l, ok := apps.([]any); ok && err == nil {
			for _, a := range l {
				if m, _ := a.(map[string]any); m != nil && fmt.Sprint(m["aid"]) == aid {
					status, vmid = fmt.Sprint(m["status"]), fmt.Sprint(m["vmid"])
				}
			}
		}
		if status == "RUNNING" || status == "ERROR" {
			break
		}
		time.Sleep(20 * time.Second)
	}
	st = watch.latest()
	console := ""
	for _, s := range st.Servers {
		if s.ID == server {
			console = s.Console
		}
	}
	t.Logf("instance console:\n%s", testutil.Tail(console, 60))
	t.Logf("director log:\n%s", testutil.Tail(st.Director, 30))
	if !sawInstance {
		t.Fatalf("no ACTIVE LXC instance from image %s (application %s): servers %+v, virsh %v, hypervisors %v, error %q", imageID, status, st.Servers, st.Virsh, st.Hypervisors, st.Error)
	}
	checks := []struct{ what, where, want string }{
		{"contextualization read the user data from the metadata service", console, "context from the metadata service"},
		{"the director served ConPaaS.tar.gz", st.Director, "ConPaaS.tar.gz requested"},
		// The user data's curl -f --cacert (test/userdatafixture): the
		// manager exists only in the tarball, so it runs only if the
		// download was verified with the director's CA.
		{"the instance downloaded ConPaaS.tar.gz verified with the director's CA and started its manager", console, "fake manager: started: -c /root/config.cfg"},
		{"the manager called /credit back with its certificate", console, "fake manager: /credit answered {\"credit\""},
		{"the director took the manager's decrementUserCredit callback", st.Director, "credit decrement"},
		{"contextualization reported", console, "CONPAAS-READY role=manager started-by=user-data"},
	}
	reached := 0
	for _, c := range checks {
		if !strings.Contains(c.where, c.want) {
			t.Errorf("chain broken: not seen that %s (%q)", c.what, c.want)
			break
		}
		reached++
		step("7/9 %s", c.what)
	}
	if status != "RUNNING" {
		t.Fatalf("application %s is %q, want RUNNING (the director's check_process on the manager)", aid, status)
	}
	if vmid != server {
		t.Errorf("the director lists the application's manager as VM %q; Nova's instance is %s", vmid, server)
	}
	// The debit of the first hour, then the manager's 3 (expected values:
	// startapp's Debit(1), the fake manager's decrement=3).
	if after := credit(); after != before-1-3 {
		t.Errorf("credit %v after the start, want %v (1 for the first hour, 3 the manager took)", after, before-4)
	}
	if t.Failed() {
		t.FailNow()
	}
	step("8/9 application %s RUNNING: the director reached the manager's check_process; credit %v", aid, credit())

	if v, err := cl.form(ctx, "stopapp/"+aid, url.Values{}, true); err != nil {
		t.Fatalf("stopapp: %v %v", err, v)
	}
	stopped := time.Now()
	for time.Since(stopped) < 15*time.Minute {
		time.Sleep(20 * time.Second)
		st = watch.latest()
		gone, domain := true, ""
		for _, s := range st.Servers {
			if s.ID == server {
				gone, domain = false, s.Instance
			}
		}
		if domain == "" {
			domain = instanceName
		}
		if gone && !contains(st.Virsh, domain) {
			step("9/9 stopapp: Nova deleted the instance and its LXC domain (%s); the whole chain ran in %s", time.Since(stopped).Round(time.Second), time.Since(began).Round(time.Second))
			return
		}
	}
	t.Fatalf("the instance is still there 15 minutes after stopapp: servers %+v, virsh %v", st.Servers, st.Virsh)
}

// buildNutshell builds the Nutshell template into dir with an SSH key for
// root (the template's ssh_authorized_key), kept at key.
func buildNutshell(t *testing.T, root, dir, key string) {
	t.Helper()
	os.Remove(key)
	os.Remove(key + ".pub")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "cps-e2e", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	// The disk only (with the LXC image it carries): the OVA is
	// TestNutshell's.
	if err := buildNutshellTemplate(t, root, dir, "-force", "-only", "nutshell-disk", "-var", "ssh_authorized_key="+strings.TrimSpace(string(pub))); err != nil {
		os.Remove(filepath.Join(dir, "nutshell-disk.img"))
		t.Fatal(err)
	}
}

// nutshellSSH runs commands on the Nutshell as root through QEMU's forward
// of its SSH port, with the key the build put in.
type nutshellSSH struct {
	t     *testing.T
	key   string
	port  int
	caPEM []byte

	mu       sync.Mutex
	state    nutshellState
	reported bool
}

func (s *nutshellSSH) cmd(ctx context.Context, command string) *exec.Cmd {
	return exec.CommandContext(ctx, "ssh", "-i", s.key, "-p", fmt.Sprint(s.port), "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
		"-o", "ConnectTimeout=60", "-o", "ServerAliveInterval=30", "root@127.0.0.1", command)
}

func (s *nutshellSSH) run(ctx context.Context, stdin io.Reader, command string) ([]byte, error) {
	// sshd may still be starting right after "ready": a few tries.
	var out []byte
	var err error
	for i := 0; i < 5; i++ {
		c := s.cmd(ctx, command)
		c.Stdin = stdin
		var stderr bytes.Buffer
		c.Stderr = &stderr
		out, err = c.Output()
		if err == nil {
			return out, nil
		}
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 255 || stdin != nil && i > 0 {
			return append(out, stderr.Bytes()...), err
		}
		time.Sleep(10 * time.Second)
	}
	return out, err
}

// watch starts watchScript; latest returns its last report.
func (s *nutshellSSH) watch(ctx context.Context) *nutshellSSH {
	c := s.cmd(ctx, "python3 -u -c "+shellQuote(watchScript))
	stdout, err := c.StdoutPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	c.Stderr = os.Stderr
	if err := c.Start(); err != nil {
		s.t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 8<<20)
		for sc.Scan() {
			var st nutshellState
			if json.Unmarshal(sc.Bytes(), &st) == nil {
				s.mu.Lock()
				s.state, s.reported = st, true
				s.mu.Unlock()
			}
		}
		c.Wait()
	}()
	s.t.Cleanup(func() {
		if c.Process != nil {
			c.Process.Kill()
		}
	})
	return s
}

// first waits for watchScript's first report.
func (s *nutshellSSH) first(ctx context.Context) *nutshellState {
	for ctx.Err() == nil {
		s.mu.Lock()
		st, ok := s.state, s.reported
		s.mu.Unlock()
		if ok {
			return &st
		}
		time.Sleep(2 * time.Second)
	}
	return nil
}

func (s *nutshellSSH) latest() nutshellState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// directorClient speaks the director's protocol as cps-tools does: form
// posts over HTTPS, verified with the director's CA, to
// https://192.168.56.10:5555 (the certificate's address), dialled through
// QEMU's forward on the loopback.
type directorClient struct {
	t          *testing.T
	anon, user *http.Client
	pool       *x509.CertPool
	dial       func(ctx context.Context, network, addr string) (net.Conn, error)
	username   string
}

func newDirectorClient(t *testing.T, caPEM []byte, port int) *directorClient {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("the director's CA certificate does not parse:\n%s", caPEM)
	}
	d := &net.Dialer{Timeout: 30 * time.Second}
	c := &directorClient{t: t, pool: pool, dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr != nutshellIP+":5555" {
			return nil, fmt.Errorf("the test reaches only the director, not %s", addr)
		}
		return d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	}}
	c.anon = c.client(nil)
	return c
}

func (c *directorClient) client(cert *tls.Certificate) *http.Client {
	tc := &tls.Config{RootCAs: c.pool, MinVersion: tls.VersionTLS12}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{TLSClientConfig: tc, DialContext: c.dial}}
}

// form posts (or, for the read-only routes, gets) method with values and
// decodes the JSON answer; an {"error": ...} answer is an error.
func (c *directorClient) form(ctx context.Context, method string, v url.Values, cert bool) (any, error) {
	if v == nil {
		v = url.Values{}
	}
	hc := c.anon
	if cert {
		hc, v = c.user, cloneWith(v, "username", c.username)
	}
	u := "https://" + nutshellIP + ":5555/" + method
	var req *http.Request
	var err error
	switch method {
	case "user_credit", "listapp":
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, u+"?"+v.Encode(), nil)
	default:
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(v.Encode()))
		if req != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	}
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("director %s: %w", method, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("director %s: HTTP %d: %s", method, resp.StatusCode, b)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("director %s: %q is not JSON", method, b)
	}
	if m, ok := out.(map[string]any); ok && m["error"] != nil && m["error"] != false {
		return out, fmt.Errorf("director %s: %v", method, m["error"])
	}
	return out, nil
}

// certs is /getcerts: the user's certificate for the API's user routes.
func (c *directorClient) certs(ctx context.Context, user, password string) error {
	v := url.Values{"username": {user}, "password": {password}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+nutshellIP+":5555/getcerts", strings.NewReader(v.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.anon.Do(req)
	if err != nil {
		return fmt.Errorf("director getcerts: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return fmt.Errorf("director getcerts: not a zip (%v): %q", err, b)
	}
	files := map[string][]byte{}
	for _, f := range zr.File {
		r, err := f.Open()
		if err != nil {
			return err
		}
		files[f.Name], _ = io.ReadAll(r)
		r.Close()
	}
	cert, err := tls.X509KeyPair(files["cert.pem"], files["key.pem"])
	if err != nil {
		return fmt.Errorf("director getcerts: %w", err)
	}
	c.user, c.username = c.client(&cert), user
	return nil
}

func cloneWith(v url.Values, k, val string) url.Values {
	out := url.Values{}
	for kk, vv := range v {
		out[kk] = vv
	}
	out.Set(k, val)
	return out
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s && s != "" {
			return true
		}
	}
	return false
}

func lastLine(b []byte) []byte {
	l := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	return l[len(l)-1]
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
