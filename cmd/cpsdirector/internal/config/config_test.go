package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExamplesParse(t *testing.T) {
	for _, f := range []string{"director.cfg.example", "director.cfg.multicloud-example"} {
		c, err := Load(filepath.Join("..", "..", f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if c.Host != "director.example.org" || c.Listen != ":5555" {
			t.Errorf("%s: host %q listen %q", f, c.Host, c.Listen)
		}
		if c.DBPath != "/etc/cpsdirector/director.db" || c.CertDir != "/etc/cpsdirector/certs" {
			t.Errorf("%s: paths %q %q", f, c.DBPath, c.CertDir)
		}
	}
	c, _ := Load("../../director.cfg.multicloud-example")
	if got := strings.Join(c.CloudNames(), ","); got != "iaas,ec2-ireland,devstack" {
		t.Fatalf("clouds %s", got)
	}
	ds, _ := c.Cloud("devstack")
	if ds.Driver != DriverOpenStack || ds.Project != "demo" || ds.InstanceType != "m1.small" || ds.CloudName != "devstack" {
		t.Fatalf("devstack %+v", ds)
	}
	ir, _ := c.Cloud("ec2-ireland")
	if ir.ImageRef == nil || ir.ImageRef.Version != "2.1.0" || ir.Region != "eu-west-1" {
		t.Fatalf("ireland %+v", ir)
	}
}

const good = `[conpaas]
DIRECTOR_URL = https://10.0.0.1:5555

[iaas]
DRIVER = EC2
USER = AK
PASSWORD = S#cret
REGION = ec2.us-west-2.amazonaws.com
IMAGE_ID = ami-1
SIZE = t3.small
SECURITY_GROUP_NAME = conpaas
KEY_NAME = k
`

func TestParseGood(t *testing.T) {
	c, err := Parse("/x/director.cfg", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	cl := c.Clouds[0]
	if cl.Driver != "ec2" || cl.Region != "us-west-2" || cl.Password != "S#cret" || cl.ImageID != "ami-1" || c.ConfDir != "/x" {
		t.Fatalf("%+v %+v", c, cl)
	}
}

func TestParseErrors(t *testing.T) {
	repl := func(old, new string) string { return strings.Replace(good, old, new, 1) }
	cases := []struct {
		name, cfg, want string
	}{
		{"no section", "DIRECTOR_URL = x\n", "director.cfg:1: key outside of any section"},
		{"garbage", repl("KEY_NAME = k", "KEY_NAME k"), `director.cfg:12: expected KEY = value, got "KEY_NAME k"`},
		{"unclosed", repl("[iaas]", "[iaas"), "director.cfg:4: section header"},
		{"dup key", repl("KEY_NAME = k", "KEY_NAME = k\nkey_name = j"), "director.cfg:13: KEY_NAME set twice in [iaas] (first at line 12)"},
		{"unknown key", repl("SIZE =", "SIZZE ="), "director.cfg:10: unknown key SIZZE in [iaas]"},
		{"no url", repl("DIRECTOR_URL = https://10.0.0.1:5555", ""), "director.cfg:1: [conpaas] has no DIRECTOR_URL"},
		{"http url", repl("https://10.0.0.1", "http://10.0.0.1"), "director.cfg:2: DIRECTOR_URL \"http://10.0.0.1:5555\" must use https"},
		{"path url", repl(":5555", ":5555/x"), "must be only scheme, host and port"},
		{"bad driver", repl("DRIVER = EC2", "DRIVER = opennebula"), "director.cfg:5: [iaas] DRIVER = opennebula is not supported"},
		{"no user", repl("USER = AK\n", ""), "director.cfg:4: [iaas] (DRIVER = ec2) needs the EC2 access key id: set USER"},
		{"bad region", repl("ec2.us-west-2.amazonaws.com", "moon"), "director.cfg:8: REGION \"moon\" is not an EC2 region"},
		{"no image", repl("IMAGE_ID = ami-1\n", ""), "director.cfg:4: [iaas] needs an image"},
		{"both images", repl("IMAGE_ID = ami-1", "IMAGE_ID = ami-1\nIMAGE = catalogue:conpaas"), "director.cfg:10: [iaas] sets both IMAGE_ID (line 9) and IMAGE"},
		{"bad ref", repl("IMAGE_ID = ami-1", "IMAGE = conpaas"), "director.cfg:9: IMAGE = conpaas: expected catalogue:NAME"},
		{"unknown cloud", good + "OTHER_CLOUDS = nowhere\n", "director.cfg:13: OTHER_CLOUDS names cloud \"nowhere\" but there is no [nowhere] section"},
		{"unused section", good + "[stray]\nDRIVER = ec2\n", "director.cfg:13: section [stray] is not used"},
		{"os key on ec2", repl("SIZE = t3.small", "SIZE = t3.small\nFLAVOR = m1"), "director.cfg:11: FLAVOR is an OpenStack setting"},
		{"openstack missing project", good + "OTHER_CLOUDS = os\n[os]\nDRIVER = openstack\nAUTH_URL = http://k:5000/v3\nUSER = u\nPASSWORD = p\nFLAVOR = m1\nIMAGE = catalogue:c\nSECURITY_GROUP_NAME = d\nKEY_NAME = k\n",
			"director.cfg:14: [os] (DRIVER = openstack) needs the OpenStack project: set PROJECT"},
		{"bad arch", repl("SIZE = t3.small", "SIZE = t3.small\nARCH = sparc"), "director.cfg:11: ARCH = sparc"},
		{"indented", repl("KEY_NAME = k", "  KEY_NAME = k"), "director.cfg:12: indented line"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("director.cfg", []byte(tc.cfg))
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.cfg)
			}
			if !strings.HasPrefix(err.Error(), tc.want) && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q\nwant %q", err, tc.want)
			}
		})
	}
}

func TestLoadMissing(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "director.cfg"))
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "d.cfg")
	os.WriteFile(p, []byte(good), 0o600)
	if _, err := Load(p); err != nil {
		t.Fatal(err)
	}
}
