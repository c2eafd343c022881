package imagesel

import (
	"strings"
	"testing"

	"github.com/conpaas/cps/cmd/cpsdirector/internal/config"
	"github.com/conpaas/cps/images/catalogue"
)

func testCatalogue() *catalogue.Catalogue {
	return &catalogue.Catalogue{SchemaVersion: 1, Artifacts: []catalogue.Artifact{
		{Name: "conpaas", Version: "2.9", Arch: "amd64", MD5: "m29", Registered: []catalogue.Registration{
			{Cloud: "ec2", Target: "ec2-ebs", Region: "us-east-1", ImageID: "ami-29"},
		}},
		{Name: "conpaas", Version: "2.10", Arch: "amd64", MD5: "m210", Registered: []catalogue.Registration{
			{Cloud: "ec2", Target: "ec2-ebs", Region: "us-east-1", ImageID: "ami-210"},
			{Cloud: "openstack", Target: "glance", CloudName: "devstack", Region: "RegionOne", ImageID: "g-210"},
		}},
		{Name: "conpaas", Version: "2.1.0", Arch: "amd64", Registered: []catalogue.Registration{
			{Cloud: "ec2", Target: "ec2-ebs", Region: "eu-west-1", ImageID: "ami-8fa1c3fc"},
			{Cloud: "openstack", Target: "glance", CloudName: "lab", ImageID: "g-lab"},
		}},
		{Name: "conpaas-rpi", Version: "2.1.0", Arch: "armhf", Registered: []catalogue.Registration{
			{Cloud: "openstack", Target: "glance", CloudName: "pi", ImageID: "g-pi"},
		}},
		{Name: "unregistered", Version: "1", Arch: "amd64"},
	}}
}

func TestResolve(t *testing.T) {
	ec2 := func(region, ref, ver string) config.Cloud {
		return config.Cloud{Name: "c", Driver: "ec2", Region: region, Arch: "amd64", ImageRef: &config.ImageRef{Name: ref, Version: ver}}
	}
	os := func(cloud, region, arch, ref, ver string) config.Cloud {
		return config.Cloud{Name: "c", Driver: "openstack", CloudName: cloud, Region: region, Arch: arch, ImageRef: &config.ImageRef{Name: ref, Version: ver}}
	}
	cases := []struct {
		name    string
		cloud   config.Cloud
		want    string // image id
		wantErr string
	}{
		{"fixed id", config.Cloud{Name: "c", Driver: "ec2", ImageID: "ami-fixed"}, "ami-fixed", ""},
		{"newest numeric not lexical", ec2("us-east-1", "conpaas", ""), "ami-210", ""},
		{"pinned version", ec2("us-east-1", "conpaas", "2.9"), "ami-29", ""},
		{"older version elsewhere", ec2("eu-west-1", "conpaas", ""), "ami-8fa1c3fc", ""},
		{"region missing", ec2("ap-south-1", "conpaas", ""), "", "not registered for ec2 region ap-south-1 (amd64) (registered: 2.10 ec2 us-east-1; 2.10 openstack devstack RegionOne; 2.9 ec2 us-east-1; 2.1.0 ec2 eu-west-1; 2.1.0 openstack lab)"},
		{"version missing", ec2("us-east-1", "conpaas", "3.0"), "", "the catalogue has no artifact conpaas version 3.0"},
		{"name missing", ec2("us-east-1", "nope", ""), "", "no artifact nope (it has: conpaas-rpi@2.1.0, conpaas@2.1.0"},
		{"unregistered", ec2("us-east-1", "unregistered", ""), "", "registered nowhere"},
		{"openstack cloud name", os("devstack", "RegionOne", "amd64", "conpaas", ""), "g-210", ""},
		{"openstack no region in registration", os("lab", "RegionTwo", "amd64", "conpaas", ""), "g-lab", ""},
		{"openstack any cloud", os("", "", "amd64", "conpaas", "2.1.0"), "g-lab", ""},
		{"openstack wrong region", os("devstack", "RegionTwo", "amd64", "conpaas", "2.10"), "", "not registered for openstack cloud devstack region RegionTwo"},
		{"arch mismatch", os("pi", "", "amd64", "conpaas-rpi", ""), "", "only for armhf, not for ARCH = amd64"},
		{"arch match", os("pi", "", "armhf", "conpaas-rpi", ""), "g-pi", ""},
		{"ec2 registration not used for openstack", os("", "us-east-1", "amd64", "conpaas", "2.9"), "", "not registered for openstack"},
	}
	cat := testCatalogue()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ch, err := Resolve(cat, tc.cloud)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ch.ImageID != tc.want {
				t.Fatalf("image %s, want %s", ch.ImageID, tc.want)
			}
		})
	}
	if _, err := Resolve(&catalogue.Catalogue{}, ec2("us-east-1", "conpaas", "")); err == nil || !strings.Contains(err.Error(), "catalogue is empty") {
		t.Fatal(err)
	}
}

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{{"2.10", "2.9", 1}, {"2.1.0", "2.1", 1}, {"2.1", "2.1", 0}, {"1.0-rc1", "1.0-rc2", -1}, {"10", "9", 1}} {
		if got := CompareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("%s vs %s = %d", tc.a, tc.b, got)
		}
	}
}
