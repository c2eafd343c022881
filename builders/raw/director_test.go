package raw

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
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conpaas/cps/builders/disk"
	cfs "github.com/conpaas/cps/builders/fs"
	"github.com/conpaas/cps/test/qemu"
)

// fakeDirector serves ConPaaS.tar.gz over HTTPS on 127.0.0.1 with a
// certificate from its own CA, as the ConPaaS director does. A guest on
// QEMU's restricted user network reaches it only as directorGuestAddr,
// the one forward the boot test opens; that address is in the
// certificate, so the download succeeds only if the guest verifies with
// that CA.
const directorGuestAddr = "10.0.2.100:443"

type fakeDirector struct {
	srv       *httptest.Server
	caPEM     []byte
	downloads atomic.Int32
}

func newFakeDirector(t *testing.T) *fakeDirector {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cps test director CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "10.0.2.100"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("10.0.2.100"), net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	d := &fakeDirector{caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})}
	tgz := conpaasTarball(t)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /download/ConPaaS.tar.gz", func(w http.ResponseWriter, r *http.Request) {
		d.downloads.Add(1)
		w.Header().Set("Content-Type", "application/x-gzip")
		w.Write(tgz)
	})
	d.srv = httptest.NewUnstartedServer(mux)
	d.srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	d.srv.StartTLS()
	t.Cleanup(d.srv.Close)
	return d
}

// forward is the VM's way to the director.
func (d *fakeDirector) forward() qemu.Forward {
	return qemu.Forward{Guest: directorGuestAddr, Host: d.srv.Listener.Addr().String()}
}

// userData is what the director would hand the VM: a script writing the CA
// and config.cfg of a php agent, after the test's extra commands (extra).
func (d *fakeDirector) userData(extra string) string {
	return fmt.Sprintf(`#!/bin/bash
%s
set -e
mkdir -p /etc/cpsagent/certs
cat > /etc/cpsagent/certs/ca_cert.pem <<'EOF'
%sEOF
cat > /root/config.cfg <<'EOF'
[agent]
DIRECTOR_URL = https://%s
TYPE = php
EOF
`, extra, d.caPEM, directorGuestAddr)
}

// fakeAgent is the tarball's php agent, the test's stand-in for ConPaaS's.
// It counts its starts in the VM and announces each on the serial console.
// On its first start it waits until the boot has finished, shows the VM's
// sockets (/proc/net: what listens), its processes (what runs a DHCP
// client) and which process holds which socket, then reboots the VM, as
// a cloud reboots a running agent VM: the test then waits for start 2.
const fakeAgent = `#!/bin/sh
n=$(( $(cat /var/lib/cps-test-agent-starts 2>/dev/null || echo 0) + 1 ))
echo $n > /var/lib/cps-test-agent-starts
echo "fake php agent started: $* (start $n)" > /dev/ttyS0
[ "$n" = 1 ] || exec sleep 3600
systemctl is-system-running --wait > /dev/null 2>&1
{
for f in tcp tcp6 udp udp6; do
    tail -n +2 /proc/net/$f | while read -r sl local remote st queues tr retr uid timeout inode rest; do
        echo "CPS-SOCK $f $local $st $inode"
    done
done
for p in /proc/[0-9]*; do
    read -r comm < $p/comm 2>/dev/null && echo "CPS-PROC ${p#/proc/} $comm"
done
find /proc/[0-9]*/fd -maxdepth 1 -lname 'socket:*' -printf 'CPS-FD %h %l\n' 2>/dev/null
echo CPS-INSPECTED
} > /dev/ttyS0
systemctl reboot
exec sleep 3600
`

// conpaasTarball is a ConPaaS.tar.gz with the fake php agent.
func conpaasTarball(t *testing.T) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	files := []struct {
		name string
		mode int64
		body string
	}{
		{"ConPaaS/", 0o755, ""},
		{"ConPaaS/sbin/", 0o755, ""},
		{"ConPaaS/sbin/agent/", 0o755, ""},
		{"ConPaaS/sbin/agent/php-cpsagent", 0o755, fakeAgent},
	}
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.body)), Typeflag: tar.TypeReg}
		if strings.HasSuffix(f.name, "/") {
			h.Typeflag = tar.TypeDir
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(f.body))
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

// configDrive makes an OpenStack-style config drive (a filesystem labelled
// config-2 with openstack/latest/user_data) as a raw disk.
func configDrive(t *testing.T, ctx context.Context, dir, userData string) string {
	t.Helper()
	src := filepath.Join(dir, "config-drive")
	if err := os.MkdirAll(filepath.Join(src, "openstack/latest"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "openstack/latest/user_data"), []byte(userData), 0o644); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "config-drive.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 16 << 20
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := cfs.MakeExt4(ctx, f, 0, size, src, "config-2", disk.GUID("test", "config-2"), 0); err != nil {
		t.Fatal(err)
	}
	return p
}

// The fake director really needs its CA: a client without it is refused,
// one with it gets the tarball (what curl --cacert does in the guest).
func TestFakeDirectorTLS(t *testing.T) {
	d := newFakeDirector(t)
	url := d.srv.URL + "/download/ConPaaS.tar.gz"
	if _, err := (&http.Client{Transport: &http.Transport{}}).Get(url); err == nil {
		t.Fatal("download without the director CA succeeded")
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(d.caPEM)
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || d.downloads.Load() != 1 {
		t.Fatalf("status %d, downloads %d", resp.StatusCode, d.downloads.Load())
	}
}
