package compute

import (
	"bytes"
	"context"
	"testing"

	"github.com/conpaas/cps/clouds/awsaccess"
	"github.com/conpaas/cps/clouds/osauth"
	"github.com/conpaas/cps/test/ec2fake"
	"github.com/conpaas/cps/test/novafake"
	"github.com/conpaas/cps/test/userdatafixture"
)

// The user data of a manager reaches the cloud byte for byte: what EC2's
// RunInstances and Nova's server create carry (base64, decoded by the
// fakes as the clouds do) is the shared fixture that the images'
// contextualization is tested with.
func TestUserDataReachesTheCloud(t *testing.T) {
	ctx := context.Background()
	ec2 := ec2fake.Start()
	defer ec2.Close()
	ec2.AddImage("us-east-1", "ami-12345678", "conpaas")
	nova := novafake.New()
	defer nova.Close()
	nova.AddImage("img-conpaas-lxc", "")
	for _, tc := range []struct {
		cloud string
		cfg   Config
		image string
		sent  func() []byte
	}{
		{"ec2", Config{Driver: "ec2", AWS: awsaccess.Static("us-east-1", ec2.AccessKey, ec2.Secret, ec2.URL)}, "ami-12345678", func() []byte {
			for _, in := range ec2.Instances {
				return in.UserData
			}
			return nil
		}},
		{"openstack", Config{Driver: "openstack", OpenStack: osauth.Password(nova.AuthURL(), nova.User, nova.Password, nova.Project, nova.Domain, nova.Region)},
			"img-conpaas-lxc", func() []byte {
				if vs := nova.Servers(); len(vs) == 1 {
					return vs[0].UserData
				}
				return nil
			}},
	} {
		t.Run(tc.cloud, func(t *testing.T) {
			c, err := Open(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if tc.cloud == "ec2" {
				if err := c.EnsureSecurityGroup(ctx, "default", nil); err != nil {
					t.Fatal(err)
				}
			}
			ud := userdatafixture.ManagerUserData(tc.cloud)
			if _, err := c.Start(ctx, StartRequest{Name: "conpaas-u1-a1-mgr", ImageID: tc.image, InstanceType: "m1.small", SecurityGroup: "default", UserData: ud}); err != nil {
				t.Fatal(err)
			}
			if got := tc.sent(); !bytes.Equal(got, ud) {
				t.Errorf("the cloud received %d bytes of user data, not the %d of the fixture", len(got), len(ud))
			}
		})
	}
}
