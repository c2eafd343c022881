// Package nutshell tests the Nutshell's first-boot scripts
// (scripts/nutshell) against real services where they run here.
package nutshell

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/conpaas/cps/images/catalogue"
	"github.com/conpaas/cps/internal/testutil"
	"github.com/conpaas/cps/test/glanceserver"
	"github.com/conpaas/cps/test/keystonefake"
)

// conpaas-nutshell-openstack image, as the first boot runs it, against
// Debian's real glance-api behind a Keystone fake: the services image the
// appliance carries is uploaded as Nova's LXC driver takes it (raw, bare,
// hypervisor_type=lxc, public; docs/lxc.md), Glance's MD5 is checked
// against the image's catalogue entry, and the director's catalogue names
// the Glance image (Go's catalogue reader must accept it). A second run
// finds the image and uploads nothing; an entry whose MD5 is not the
// file's makes the setup fail.
func TestServicesImage(t *testing.T) {
	for _, tool := range []string{"glance-api", "glance-manage"} {
		testutil.RequireTool(t, tool)
	}
	python := requireOpenstacksdk(t)
	g := glanceserver.Start(t)
	ks := keystonefake.Start(t, g.URL, "admin", "conpaas", "admin")
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(repo, "scripts/nutshell/nutshell-openstack.py")

	dir := t.TempDir()
	img := filepath.Join(dir, "conpaas-lxc.img")
	data := []byte(strings.Repeat("ext4 filesystem stand-in\n", 40000))
	if err := os.WriteFile(img, data, 0o644); err != nil {
		t.Fatal(err)
	}
	m, s := md5.Sum(data), sha256.Sum256(data)
	entry := func(md5hex string) {
		t.Helper()
		c := catalogue.Catalogue{SchemaVersion: catalogue.SchemaVersion, Artifacts: []catalogue.Artifact{{
			Name: "conpaas-lxc", Version: "2.1.0", Kind: "lxc", Format: "raw", Arch: "amd64", File: "conpaas-lxc.img",
			Size: int64(len(data)), MD5: md5hex, SHA256: hex.EncodeToString(s[:]), Built: time.Unix(1700000000, 0).UTC()}}}
		b, _ := json.Marshal(c)
		if err := os.WriteFile(img+".catalogue.json", b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cat := filepath.Join(dir, "etc/cpsdirector/catalogue.json")
	run := func() (string, error) {
		c := exec.Command(python, script, "image")
		c.Env = append(os.Environ(), "NUTSHELL_AUTH_URL="+ks.URL, "NUTSHELL_PASSWORD=conpaas", "NUTSHELL_IMAGE="+img, "NUTSHELL_CATALOGUE="+cat)
		out, err := c.CombinedOutput()
		return string(out), err
	}

	entry(hex.EncodeToString(m[:]))
	out, err := run()
	if err != nil {
		t.Fatalf("conpaas-nutshell-openstack image: %v\n%s", err, out)
	}
	if !strings.HasSuffix(strings.TrimSpace(out), "IMAGE = catalogue:conpaas-lxc") {
		t.Errorf("director.cfg's line: %q", out)
	}
	c, err := catalogue.Load(cat)
	if err != nil {
		t.Fatalf("the director's catalogue: %v", err)
	}
	a := c.Find("conpaas-lxc")
	if a == nil || len(a.Registered) != 1 || a.Registered[0].Cloud != "openstack" || a.Registered[0].Region != "RegionOne" || a.MD5 != hex.EncodeToString(m[:]) {
		t.Fatalf("catalogue %+v", c.Artifacts)
	}
	id := a.Registered[0].ImageID
	resp, err := http.Get(g.URL + "/v2/images/" + id)
	if err != nil {
		t.Fatal(err)
	}
	var gi map[string]any
	json.NewDecoder(resp.Body).Decode(&gi)
	resp.Body.Close()
	for k, v := range map[string]any{"name": "conpaas-lxc", "status": "active", "disk_format": "raw", "container_format": "bare",
		"hypervisor_type": "lxc", "visibility": "public", "checksum": hex.EncodeToString(m[:]), "size": float64(len(data))} {
		if gi[k] != v {
			t.Errorf("Glance image %s = %v, want %v", k, gi[k], v)
		}
	}

	// Again (a first boot that failed later runs again): nothing new.
	out, err = run()
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	if c2, err := catalogue.Load(cat); err != nil || c2.Find("conpaas-lxc").Registered[0].ImageID != id {
		t.Errorf("second run: catalogue %v %v", c2, err)
	}
	uploads := 0
	for _, r := range ks.Requests() {
		if strings.HasSuffix(r, "/file") && strings.HasPrefix(r, "PUT ") {
			uploads++
		}
	}
	if uploads != 1 {
		t.Errorf("%d uploads in two runs, want 1: %v", uploads, ks.Requests())
	}

	// An entry that does not describe the bytes Glance holds.
	entry(strings.Repeat("0", 32))
	if out, err := run(); err == nil || !strings.Contains(out, "catalogue entry says") {
		t.Errorf("wrong MD5: %v\n%s", err, out)
	}
}

// requireOpenstacksdk returns the scripts' own interpreter (their #!
// line), Debian's python3, once it can import python3-openstacksdk, as in
// the Nutshell; it skips the test without them (fails it in strict mode,
// as make test runs: scripts/deps/glance.list installs the package).
func requireOpenstacksdk(t *testing.T) string {
	t.Helper()
	const python = "/usr/bin/python3"
	testutil.RequireTool(t, python)
	if err := exec.Command(python, "-c", "import openstack").Run(); err != nil {
		if testutil.Strict() {
			t.Fatalf("%s cannot import openstack: install python3-openstacksdk (scripts/deps.sh, which make test runs, does)", python)
		}
		t.Skip("python3-openstacksdk is not installed")
	}
	return python
}
