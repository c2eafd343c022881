package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	fh.WriteAt([]byte("GRUB and a filesystem"), 0)
	fh.Close()
	cat := filepath.Join(dir, "catalogue.json")
	code, out, errOut := run(t, "register", "-target", "ec2-ebs", "-image", img, "-version", "2.1.0", "-region", "ap-southeast-2", "-catalogue", cat)
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
	code, _, errOut = run(t, "register", "-target", "ec2-ebs", "-image", img, "-region", "us-west-2", "-catalogue", cat)
	after, _ := os.ReadFile(cat)
	if code != 1 || !strings.Contains(errOut, "secret key is wrong") || string(before) != string(after) {
		t.Errorf("wrong secret: exit %d: %s", code, errOut)
	}
}
