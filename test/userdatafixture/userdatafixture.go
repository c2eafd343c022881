// Package userdatafixture is the user data the ConPaaS director sends a
// manager VM, on EC2 and on OpenStack, kept as files both sides test
// against byte for byte: cmd/cpsdirector renders it from the inputs here
// and must produce exactly these bytes (go test ./cmd/cpsdirector/internal/userdata
// -update rewrites them), and the images' boot tests hand these bytes to a
// VM or container as its user data, whose contextualization must run them
// to the end (certificates in place, ConPaaS.tar.gz downloaded from the
// director verified with its CA, the manager started).
//
// The certificates and keys are a test CA's, made for these tests only:
// they secure nothing.
package userdatafixture

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"embed"
	"fmt"
	"strings"
	"testing"
)

//go:embed testdata
var files embed.FS

// The inputs the director renders the fixture from.
const (
	// DirectorURL is the Nutshell's director; the boot tests serve a
	// director at this address on the guest's network.
	DirectorURL    = "https://192.168.56.10:5555"
	DeploymentName = "conpaas"
	UserID         = 1
	AppID          = 1
)

// Clouds are the clouds whose user data is kept.
var Clouds = []string{"ec2", "openstack"}

// File is a fixture file by name: ca_cert.pem, ca_key.pem,
// director_cert.pem, director_key.pem (the director's server certificate
// for 192.168.56.10), manager_cert.pem, manager_key.pem, and
// manager-CLOUD.sh (the user data).
func File(name string) []byte {
	b, err := files.ReadFile("testdata/" + name)
	if err != nil {
		panic(fmt.Sprintf("userdatafixture: %v", err))
	}
	return b
}

// ManagerUserData is the user data of a manager VM on cloud ("ec2",
// "openstack").
func ManagerUserData(cloud string) []byte { return File("manager-" + cloud + ".sh") }

// DirectorCertificate is the director's server certificate and key.
func DirectorCertificate() (tls.Certificate, error) {
	return tls.X509KeyPair(File("director_cert.pem"), File("director_key.pem"))
}

// Tarball is a ConPaaS.tar.gz holding one executable, name (e.g.
// "ConPaaS/sbin/manager/default-cpsmanager"), and its directories: what a
// boot test's director serves in place of the real services tarball.
func Tarball(t testing.TB, name, body string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	parts := strings.Split(name, "/")
	for i := 1; i < len(parts); i++ {
		if err := tw.WriteHeader(&tar.Header{Name: strings.Join(parts[:i], "/") + "/", Mode: 0o755, Typeflag: tar.TypeDir}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
