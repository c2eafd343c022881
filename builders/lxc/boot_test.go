package lxc

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
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
)

// directorAddr is where the test's director listens on the container's
// network, the Nutshell's address.
const directorAddr = "192.168.56.10:5555"

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
	res, err := Builder{}.Build(ctx, p, img, builders.Options{SourceDateEpoch: 1700000000})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built %s in %s: %d MiB data of %d MiB", res.Path, time.Since(start).Round(time.Second), res.DataBytes>>20, img.Size>>20)
	checkImage(t, ctx, res, img.Size)

	// The network: DHCP, metadata and the director, nothing else.
	netw, err := container.NewNetwork(ctx, t.TempDir(), strings.Split(directorAddr, ":")[0])
	if err != nil {
		t.Fatal(err)
	}
	defer netw.Close()
	d := newDirector(t, netw)
	md := serveMetadata(t, netw, d.userData())

	// Booted read-write, as Nova does: a copy.
	boot := filepath.Join(t.TempDir(), "instance.img")
	if out, err := exec.Command("cp", "--sparse=always", res.Path, boot).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	r, err := container.Boot(ctx, container.Options{Image: boot, Network: netw, Marker: regexp.MustCompile(`CONPAAS-READY`), Timeout: 5 * time.Minute})
	if err != nil {
		t.Fatalf("%v\ndnsmasq:\n%s", err, netw.DHCPLog())
	}
	t.Logf("%q after %s", r.Line, r.Elapsed.Round(time.Second))
	defer func() {
		if t.Failed() {
			t.Logf("console:\n%s", r.Console)
		}
	}()
	if !strings.Contains(r.Line, "CONPAAS-READY role=manager type=php") {
		t.Errorf("marker line %q, want role=manager type=php", r.Line)
	}
	for _, want := range []string{"Detected virtualization systemd-nspawn", "context from the metadata service", "fake php manager started: -c /root/config.cfg"} {
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
	addr      string
	caPEM     []byte
	downloads atomic.Int32
}

// newDirector serves ConPaaS.tar.gz over HTTPS at directorAddr on the
// container's network, with a certificate from its own CA.
func newDirector(t *testing.T, netw *container.Network) *director {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cps test director CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	host, _, _ := net.SplitHostPort(directorAddr)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IPAddresses: []net.IP{net.ParseIP(host)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	d := &director{addr: directorAddr, caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})}
	tgz := tarball(t, "ConPaaS/sbin/manager/php-cpsmanager", "#!/bin/sh\necho \"fake php manager started: $*\" > /dev/console\nexec sleep 3600\n")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /download/ConPaaS.tar.gz", func(w http.ResponseWriter, r *http.Request) {
		d.downloads.Add(1)
		w.Write(tgz)
	})
	l, err := netw.Listen(directorAddr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}}
	go srv.ServeTLS(l, "", "")
	t.Cleanup(func() { srv.Close() })
	return d
}

// userData is a director's context for a php manager: a script writing
// the CA and config.cfg.
func (d *director) userData() string {
	return fmt.Sprintf("#!/bin/sh\nset -e\nmkdir -p /etc/cpsmanager/certs\ncat > /etc/cpsmanager/certs/ca_cert.pem <<'EOF'\n%sEOF\n"+
		"cat > /root/config.cfg <<'EOF'\n[manager]\nDIRECTOR_URL = https://%s\nTYPE = php\nEOF\n", d.caPEM, d.addr)
}

// serveMetadata answers GET /latest/user-data at the metadata address, as
// Nova's metadata service does through Neutron's metadata proxy, and
// counts the answers.
func serveMetadata(t *testing.T, netw *container.Network, userData string) *atomic.Int32 {
	t.Helper()
	var n atomic.Int32
	l, err := netw.Listen(container.MetadataAddr + ":80")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /latest/user-data", func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Write([]byte(userData))
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return &n
}

// tarball is a ConPaaS.tar.gz holding one executable.
func tarball(t *testing.T, name, body string) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	parts := strings.Split(name, "/")
	for i := 1; i < len(parts); i++ {
		tw.WriteHeader(&tar.Header{Name: strings.Join(parts[:i], "/") + "/", Mode: 0o755, Typeflag: tar.TypeDir})
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(body))
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
