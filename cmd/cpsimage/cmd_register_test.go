package main

import (
	"crypto/ed25519"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/conpaas/cps/images/catalogue"
	"github.com/conpaas/cps/test/ec2fake"
)

// cpsimage register through the standard AWS environment (credentials and
// AWS_ENDPOINT_URL) against the EC2/EBS fake, then the catalogue says where
// the image is.
func TestRegisterCLI(t *testing.T) {
	f := ec2fake.Start()
	defer f.Close()
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("EC2_ACCESS_KEY", f.AccessKey) // the seeds' variable names
	t.Setenv("EC2_SECRET_KEY", f.Secret)
	t.Setenv("AWS_ENDPOINT_URL", f.URL)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	dir := t.TempDir()
	img := filepath.Join(dir, "conpaas.img")
	fh, _ := os.Create(img)
	fh.Truncate(8 << 20)
	fh.WriteAt([]byte("GRUB and a filesystem"), 0) // no partition table: -boot says how it boots
	fh.Close()
	cat := filepath.Join(dir, "catalogue.json")
	code, out, errOut := run(t, "register", "-target", "ec2-ebs", "-image", img, "-version", "2.1.0", "-boot", "bios", "-region", "ap-southeast-2", "-catalogue", cat)
	if code != 0 || !strings.Contains(out, "conpaas ec2-ebs ap-southeast-2: ami-") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	c, _ := catalogue.Load(cat)
	if a := c.Find("conpaas"); a == nil || len(a.Registered) != 1 || a.Registered[0].Region != "ap-southeast-2" {
		t.Errorf("catalogue: %+v", a)
	}
	// Wrong secret: exit 1, one sentence, catalogue untouched.
	t.Setenv("EC2_SECRET_KEY", "wrong")
	before, _ := os.ReadFile(cat)
	code, _, errOut = run(t, "register", "-target", "ec2-ebs", "-image", img, "-boot", "bios", "-region", "us-west-2", "-catalogue", cat)
	after, _ := os.ReadFile(cat)
	if code != 1 || !strings.Contains(errOut, "secret key is wrong") || string(before) != string(after) {
		t.Errorf("wrong secret: exit %d: %s", code, errOut)
	}
}

// The via-instance flags reach the ec2-ebs target: each run fails at the
// step the flags lead it to, with its one-sentence error.
func TestRegisterViaInstanceCLI(t *testing.T) {
	f := startEC2(t)
	in := f.AddInstance(ec2fake.Instance{Region: "eu-west-1", PublicIP: "203.0.113.9"})
	dir := t.TempDir()
	img := filepath.Join(dir, "conpaas.img")
	fh, _ := os.Create(img)
	fh.Truncate(8 << 20)
	fh.WriteAt([]byte("GRUB and a filesystem"), 0) // no partition table: -boot says how it boots
	fh.Close()
	_, priv, _ := ed25519.GenerateKey(nil)
	blk, _ := ssh.MarshalPrivateKey(priv, "")
	key := filepath.Join(dir, "id_ed25519")
	os.WriteFile(key, pem.EncodeToMemory(blk), 0o600)
	cat := filepath.Join(dir, "catalogue.json")
	base := []string{"register", "-target", "ec2-ebs", "-image", img, "-boot", "bios", "-region", "eu-west-1", "-catalogue", cat, "-method", "via-instance"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "needs the id of a running EC2 instance"},
		{[]string{"-instance", "i-0000000000000dead"}, "instance i-0000000000000dead not found in eu-west-1"},
		{[]string{"-instance", in.ID, "-ssh-key", filepath.Join(dir, "nope")}, "SSH key:"},
		{[]string{"-instance", in.ID, "-ssh-key", key, "-ssh-known-hosts", filepath.Join(dir, "none")}, "known_hosts file " + filepath.Join(dir, "none") + " does not exist"},
		{[]string{"-instance", in.ID, "-ssh-key", key, "-ssh-insecure-ignore-host-key", "-ssh-addr", "127.0.0.1:9", "-ssh-user", "root", "-device", "/dev/sdg"}, "cannot connect to 127.0.0.1:9"},
		{[]string{"-method", "dd", "-instance", in.ID}, `unknown method "dd"`},
	} {
		code, _, errOut := run(t, append(append([]string{}, base...), tc.args...)...)
		if code != 1 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d: %s", tc.args, code, errOut)
		}
	}
	if len(f.Volumes) != 0 || f.Requests["CreateVolume"] != 0 {
		t.Errorf("volumes %v", f.Volumes)
	}
}

// startEC2 starts the EC2 fake for the test and points cpsimage's AWS
// settings at it (AWS's variable names, no instance metadata).
func startEC2(t *testing.T) *ec2fake.Fake {
	t.Helper()
	f := ec2fake.Start()
	t.Cleanup(f.Close)
	t.Setenv("AWS_ACCESS_KEY_ID", f.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", f.Secret)
	t.Setenv("AWS_ENDPOINT_URL", f.URL)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	return f
}
