package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/conpaas/cps/test/ec2fake"
)

// The EC2 path of the director against the SigV4-verifying EC2 fake: the
// catalogue's AMI for us-east-1 is started with the seeds' security group,
// the key pair and the manager's user data; stop terminates it; `check
// --fix-security-groups` opens the ConPaaS ports.
func TestServiceLifecycleEC2(t *testing.T) {
	f := ec2fake.Start()
	defer f.Close()
	f.AddImage("us-east-1", "ami-0c0ffee0c0ffee000", "conpaas-2.1.0")
	f.AddSecurityGroup("us-east-1", "conpaas", 443, 5555)
	e := newEnv(t, "OTHER_CLOUDS = aws", fmt.Sprintf(`
[aws]
DRIVER = ec2
USER = %s
PASSWORD = %s
REGION = us-east-1
ENDPOINT = %s
IMAGE = catalogue:conpaas
SIZE = t3.small
SECURITY_GROUP_NAME = conpaas
KEY_NAME = conpaas
`, f.AccessKey, f.Secret, f.URL))
	e.start()
	alice := e.client(e.certFor("alice", "alice-password"))
	var a app
	e.call(alice, "POST", "/applications", map[string]string{"name": "shop"}, &a)
	var s svc
	if code := e.call(alice, "POST", fmt.Sprintf("/applications/%d/services", a.ID), map[string]string{"type": "php", "cloud": "aws"}, &s); code != 201 {
		t.Fatalf("start on ec2: %d %+v", code, s)
	}
	if s.Cloud != "aws" || s.State != "running" || s.Manager == nil || s.Manager.ImageID != "ami-0c0ffee0c0ffee000" {
		t.Fatalf("service %+v", s)
	}
	in := f.Instances[s.Manager.InstanceID]
	if in == nil || in.ImageID != "ami-0c0ffee0c0ffee000" || in.Type != "t3.small" || in.KeyName != "conpaas" ||
		len(in.SecurityGroups) != 1 || in.SecurityGroups[0] != "conpaas" {
		t.Fatalf("instance %+v", in)
	}
	checkUserData(t, e, string(in.UserData), "php", a.ID, s.ID)
	if code := e.call(alice, "POST", fmt.Sprintf("/services/%d/stop", s.ID), nil, &s); code != 200 || s.State != "stopped" {
		t.Fatalf("stop %d %+v", code, s)
	}
	if in.State != "terminated" {
		t.Errorf("instance state %q after stop", in.State)
	}
	if f.Requests["RunInstances"] != 1 || f.Requests["TerminateInstances"] != 1 {
		t.Errorf("requests %v", f.Requests)
	}
	// check: the EC2 cloud's credentials, image and ports.
	out, _, _ := run(t, "", "check", "--config", e.cfg)
	for _, want := range []string{"cloud aws credentials accepted by ec2", "ami-0c0ffee0c0ffee000 (catalogue:conpaas) is available", `security group "conpaas" does not open TCP 80`} {
		if !strings.Contains(strings.Join(strings.Fields(out), " "), want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	run(t, "", "check", "--config", e.cfg, "--fix-security-groups")
	if g := f.Groups["us-east-1/conpaas"]; !g.TCPPorts[3306] || !g.TCPPorts[8081] || !g.TCPPorts[32636] {
		t.Errorf("--fix-security-groups did not open the ConPaaS ports: %v", g.TCPPorts)
	}
}
