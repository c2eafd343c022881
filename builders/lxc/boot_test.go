package lxc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conpaas/cps/builders"
	"github.com/conpaas/cps/images/checksum"
	"github.com/conpaas/cps/images/sparse"
	"github.com/conpaas/cps/images/verify"
	"github.com/conpaas/cps/internal/testutil"
	"github.com/conpaas/cps/plan"
	"github.com/conpaas/cps/test/container"
	"github.com/conpaas/cps/test/userdatafixture"
)

// directorIP is the director's address on the container's network (the
// Nutshell's, as the fixture's DIRECTOR_URL says).
const directorIP = "192.168.56.10"

// smallImage is the test's LXC image: the real builder with the base
// packages only.
func smallImage(out string) *plan.Image {
	mirror := os.Getenv("CPS_MIRROR")
	if mirror == "" {
		mirror = "http://deb.debian.org/debian"
	}
	return &plan.Image{
		Name: "conpaas-lxc-test", Kind: plan.KindLXC, Arch: "amd64", Version: "test", Output: out, Size: 1 << 30,
		Distribution: plan.Distribution{Suite: "bookworm", Mirror: mirror, Components: []string{"main"}, Variant: "minbase"},
		Checksums:    []string{"md5", "sha256"},
	}
}

// TestBuildAndBoot is the proof that an LXC image works: it builds a small
// one, checks the filesystem with e2fsck, and boots it as a container
// (systemd-nspawn mounts it through a loop device and starts /sbin/init,
// as Nova's libvirt LXC driver does) on a network where the only other
// hosts are the test's: a DHCP server handing out the route to the
// metadata address, the metadata service with the user data, and a
// director serving ConPaaS.tar.gz over HTTPS with its own CA. The
// contextualization must fetch the user data, download the tarball
// verifying the director, start the manager and print its marker on the
// container's console.
func TestBuildAndBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and boots an image (minutes)")
	}
	testutil.RequireRoot(t)
	for _, tool := range []string{"mmdebstrap", "mkfs.ext4", "e2fsck", "debugfs", "systemd-nspawn", "dnsmasq", "ip"} {
		testutil.RequireTool(t, tool)
	}
	ctx := context.Background()
	dir := t.TempDir()
	img := smallImage(filepath.Join(dir, "conpaas-lxc.img"))
	p := &plan.Plan{InputsDigest: "test-digest", Images: []plan.Image{*img}}
	start := time.Now()
	res, err := Builder{}.Build(ctx, p, img, builders.Options{CacheDir: testutil.CacheDir(), SourceDateEpoch: 1700000000})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built %s in %s: %d MiB data of %d MiB", res.Path, time.Since(start).Round(time.Second), res.DataBytes>>20, img.Size>>20)
	checkImage(t, ctx, res, img.Size)

	// The network: DHCP, metadata and the director, nothing else. The
	// user data is the director's own for a manager on OpenStack (the
	// shared fixture cmd/cpsdirector renders byte for byte).
	netw, err := container.NewNetwork(ctx, t.TempDir(), directorIP)
	if err != nil {
		t.Fatal(err)
	}
	defer netw.Close()
	d := newDirector(t, netw)
	md := serveMetadata(t, netw, userdatafixture.ManagerUserData("openstack"))

	// Booted read-write, as Nova does: a copy.
	boot := filepath.Join(t.TempDir(), "instance.img")
	if out, err := exec.Command("cp", "--sparse=always", res.Path, boot).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	r, err := container.Boot(ctx, container.Options{Image: boot, Network: netw, Marker: regexp.MustCompile(`CONPAAS-READY`),
		// The fake manager's callback line comes after the marker (the
		// contextualization does not wait for the manager), so wait for it too.
		Also: []*regexp.Regexp{regexp.MustCompile(`fake manager: /credit answered`)}, Timeout: 5 * time.Minute})
	if err != nil {
		t.Fatalf("%v\ndnsmasq:\n%s", err, netw.DHCPLog())
	}
	t.Logf("%q after %s", r.Line, r.Elapsed.Round(time.Second))
	defer func() {
		if t.Failed() {
			t.Logf("console:\n%s", r.Console)
		}
	}()
	if !strings.Contains(r.Line, "CONPAAS-READY role=manager started-by=user-data") {
		t.Errorf("marker line %q, want role=manager started-by=user-data", r.Line)
	}
	for _, want := range []string{"Detected virtualization systemd-nspawn", "context from the metadata service", "fake manager started: -c /root/config.cfg",
		`fake manager: /credit answered {"credit": 50}`} {
		if !strings.Contains(r.Console, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	if n := md.Load(); n != 1 {
		t.Errorf("the metadata service served the user data %d times, want 1", n)
	}
	if n := d.downloads.Load(); n != 1 {
		t.Errorf("the director served ConPaaS.tar.gz %d times, want 1", n)
	}
	if n := d.credits.Load(); n != 1 {
		t.Errorf("the manager called the director back %d times with its certificate, want 1", n)
	}
	if !strings.Contains(netw.DHCPLog(), "DHCPACK(ctr0) 192.168.56.") {
		t.Errorf("the container took no address from the DHCP server:\n%s", netw.DHCPLog())
	}
}

// checkImage checks what the builder made with the tools that read it:
// one ext4 filesystem (e2fsck, verify's structure check), sparse, init and
// the contextualization in it, no kernel or bootloader.
func checkImage(t *testing.T, ctx context.Context, res *builders.Result, size int64) {
	t.Helper()
	st, err := os.Stat(res.Path)
	if err != nil || st.Size() != size {
		t.Fatalf("image size = %v (%v), want %d", st, err, size)
	}
	if res.DataBytes >= size/2 {
		t.Errorf("%d bytes of data in a %d-byte image: not sparse", res.DataBytes, size)
	}
	f, _ := os.Open(res.Path)
	ext, _ := sparse.DataExtents(f)
	f.Close()
	if sparse.DataBytes(ext) != res.DataBytes {
		t.Errorf("builder says %d bytes of data, the file has %d", res.DataBytes, sparse.DataBytes(ext))
	}
	sums, err := checksum.File(ctx, res.Path, checksum.Options{Algos: []checksum.Algo{checksum.MD5}})
	if err != nil || sums.Get(checksum.MD5) != res.Sums.Get(checksum.MD5) {
		t.Errorf("md5 of the file %s, builder said %s (%v)", sums.Get(checksum.MD5), res.Sums.Get(checksum.MD5), err)
	}
	if _, ps, err := verify.Structure(res.Path, plan.KindLXC); err != nil || len(ps) != 0 {
		t.Errorf("verify --structure: %v %v", ps, err)
	}
	if out, err := exec.Command("e2fsck", "-fn", res.Path).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -fn: %v\n%s", err, out)
	}
	if out, _ := exec.Command("blkid", "-o", "export", res.Path).Output(); !strings.Contains(string(out), "LABEL="+Label) || !strings.Contains(string(out), "TYPE=ext4") {
		t.Errorf("blkid: %s", out)
	}
	debugfs := func(cmd string) string {
		out, _ := exec.Command("debugfs", "-R", cmd, res.Path).CombinedOutput()
		return string(out)
	}
	if s := debugfs("stat /usr/sbin/init"); !strings.Contains(s, "Type: symlink") || !strings.Contains(s, "systemd") {
		t.Errorf("/sbin/init is not systemd:\n%s", s)
	}
	if s := debugfs("ls /boot"); strings.Contains(s, "vmlinuz") || strings.Contains(s, "grub") {
		t.Errorf("an LXC image carries no kernel or bootloader: /boot has\n%s", s)
	}
	if s := debugfs("cat /etc/systemd/system/conpaas-contextualize.service.d/console.conf"); !strings.Contains(s, "StandardOutput=journal+console") {
		t.Errorf("contextualization does not write to the console:\n%s", s)
	}
	if s := debugfs("ls /etc/systemd/system/getty.target.wants"); strings.Contains(s, "serial-getty") {
		t.Errorf("a container has no serial port, yet a getty is enabled on one:\n%s", s)
	}
}

type director struct {
	downloads, credits atomic.Int32
}

// newDirector serves what a manager VM asks its director for at
// userdatafixture.DirectorURL on the container's network, over HTTPS with
// the fixture's certificate: ConPaaS.tar.gz, whose manager calls back
// /credit (the original's route, cert_required(role='manager')) with the
// manager certificate of the user data, which must chain to the CA.
func newDirector(t *testing.T, netw *container.Network) *director {
	t.Helper()
	cert, err := userdatafixture.DirectorCertificate()
	if err != nil {
		t.Fatal(err)
	}
	ca := x509.NewCertPool()
	ca.AppendCertsFromPEM(userdatafixture.File("ca_cert.pem"))
	d := &director{}
	tgz := userdatafixture.Tarball(t, "ConPaaS/sbin/manager/default-cpsmanager", `#!/bin/sh
# A stand-in manager: says it runs, then calls the director back.
c=/etc/cpsmanager/certs
echo "fake manager started: $*" > /dev/console
r=$(curl -fsS --cacert $c/ca_cert.pem --cert $c/cert.pem --key $c/key.pem -X POST -d "" `+userdatafixture.DirectorURL+`/credit 2>&1)
echo "fake manager: /credit answered $r" > /dev/console
exec sleep 3600
`)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /download/ConPaaS.tar.gz", func(w http.ResponseWriter, r *http.Request) {
		d.downloads.Add(1)
		w.Write(tgz)
	})
	mux.HandleFunc("POST /credit", func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			http.Error(w, "a manager certificate is required", http.StatusUnauthorized)
			return
		}
		d.credits.Add(1)
		w.Write([]byte(`{"credit": 50}`))
	})
	host := strings.TrimPrefix(userdatafixture.DirectorURL, "https://")
	l, err := netw.Listen(host)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: ca, ClientAuth: tls.VerifyClientCertIfGiven}}
	go srv.ServeTLS(l, "", "")
	t.Cleanup(func() { srv.Close() })
	return d
}

// serveMetadata answers at the metadata address what Nova's metadata
// service does (through Neutron's metadata proxy) for the EC2 paths the
// contextualization and the user data read: the user data, and the
// instance's private address (no public one: no floating IP). It counts
// the user data's answers.
func serveMetadata(t *testing.T, netw *container.Network, userData []byte) *atomic.Int32 {
	t.Helper()
	var n atomic.Int32
	l, err := netw.Listen(container.MetadataAddr + ":80")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /latest/user-data", func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Write(userData)
	})
	mux.HandleFunc("GET /latest/meta-data/local-ipv4", func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		w.Write([]byte(host))
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return &n
}
