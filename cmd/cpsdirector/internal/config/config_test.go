package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
		if c.Database.Driver != "sqlite" || c.Database.Path != "/etc/cpsdirector/director.db" || c.CertDir != "/etc/cpsdirector/certs" || c.UserDataDir != "/etc/cpsdirector/data" {
			t.Errorf("%s: paths %+v %q", f, c.Database, c.CertDir)
		}
		if len(c.Warnings) != 0 {
			t.Errorf("%s: warnings %v", f, c.Warnings)
		}
	}
	c, _ := Load("../../director.cfg.multicloud-example")
	if got := strings.Join(c.CloudNames(), ","); got != "default,ec2virginia,ec2ireland" {
		t.Fatalf("clouds %s", got)
	}
	def, _ := c.Cloud("default")
	if def.Driver != DriverOpenStack || def.AuthURL != "http://172.16.0.1:5000/v3" || def.Project != "admin" || def.InstanceType != "m1.small" || def.FloatingIP {
		t.Fatalf("default %+v", def)
	}
	va, _ := c.Cloud("ec2virginia")
	if va.Region != "us-east-1" || va.ImageID != "ami-41890256" {
		t.Fatalf("virginia %+v", va)
	}
	ir, _ := c.Cloud("ec2ireland")
	if ir.ImageRef == nil || ir.ImageRef.Version != "2.1.0" || ir.Region != "eu-west-1" {
		t.Fatalf("ireland %+v", ir)
	}
}

// original is a director.cfg as the original director.cfg.example reads
// once filled in (OpenStack uncommented, cpsconf.py's DIRECTOR_URL added),
// with every key the original knew.
const original = `[conpaas]
CONF_DIR = /etc/cpsdirector
CERT_DIR = /etc/cpsdirector/certs
DEPLOYMENT_NAME = conpaas-online
SUPPORT_EXTERNAL_IDP = false
MAX_CREDIT = 30
js_debug_level = 3
VPN_BASE_NETWORK = 172.16.0.0
VPN_NETMASK = 255.240.0.0
VPN_SERVICE_BITS = 6

[iaas]
DRIVER = openstack
USER = admin
PASSWORD = password
HOST = 172.16.0.1
SECURITY_GROUP_NAME = default
KEY_NAME = test-key
IMAGE_ID = conpaas
SIZE_ID = m1.micro
NETWORK_ID = conpaas-net
AUTO_ASSIGN_FLOATING_IP = false
MAX_VMS = 10

[director]
DEBUG = true
DATABASE_URI = sqlite:////etc/cpsdirector/director.db
USERDATA_DIR = /etc/cpsdirector/data
DIRECTOR_URL = https://director.example.org:5555
`

func TestOriginalKeys(t *testing.T) {
	c, err := Parse("/etc/cpsdirector/director.cfg", []byte(original))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 0 {
		t.Errorf("warnings %v", c.Warnings)
	}
	cl := c.Clouds[0]
	if cl.Name != "iaas" || cl.AuthURL != "http://172.16.0.1:5000/v3" || cl.Network != "conpaas-net" || !cl.FloatingIP || cl.Project != "admin" {
		t.Fatalf("cloud %+v", cl)
	}
	if c.MaxCredit != 30 || !c.Debug || c.DebugLevels["js"] != 3 || c.DeploymentName != "conpaas-online" || c.SupportExternalIDP {
		t.Fatalf("config %+v", c)
	}
	if c.NodeTimeout != 5*time.Minute || c.ManagerPort != 443 || c.AgentPort != 5555 {
		t.Fatalf("defaults %+v", c)
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
	if cl.Driver != "ec2" || cl.Region != "us-west-2" || cl.Password != "S#cret" || cl.ImageID != "ami-1" || c.ConfDir != "/x" || c.Database.Path != "/x/director.db" {
		t.Fatalf("%+v %+v", c, cl)
	}
}

// Keys and sections the original accepted but cps cannot use are warnings
// that name them, not refusals.
func TestWarnings(t *testing.T) {
	repl := func(old, new string) string { return strings.Replace(good, old, new, 1) }
	cases := []struct {
		name, cfg, want string
	}{
		{"unknown key", repl("SIZE =", "SIZZE = x\nSIZE ="), "director.cfg:10: unknown key SIZZE in [iaas] is ignored"},
		{"dup key", repl("KEY_NAME = k", "KEY_NAME = k\nkey_name = j"), "director.cfg:13: KEY_NAME set twice in [iaas] (first at line 12): the last value is used"},
		{"unknown cloud", good + "OTHER_CLOUDS = nowhere\n", `director.cfg:13: OTHER_CLOUDS names cloud "nowhere" but there is no [nowhere] section`},
		{"unused section", good + "[stray]\nDRIVER = ec2\n", "director.cfg:13: section [stray] is not used"},
		{"opennebula", good + "OTHER_CLOUDS = one\n[one]\nDRIVER = opennebula\nURL = http://x\n", "director.cfg:15: [one] DRIVER = opennebula is not supported by cpsdirector"},
		{"bad max credit", repl("[iaas]", "MAX_CREDIT = lots\n[iaas]"), `director.cfg:4: MAX_CREDIT "lots" is not a valid integer: using 50`},
		{"no driver", "[director]\nDIRECTOR_URL = https://h\n[iaas]\n# DRIVER = ec2\n", "director.cfg:3: [iaas] has no DRIVER"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("director.cfg", []byte(tc.cfg))
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !strings.Contains(strings.Join(c.Warnings, "\n"), tc.want) {
				t.Fatalf("warnings %q\nwant %q", c.Warnings, tc.want)
			}
		})
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
		{"no url", repl("DIRECTOR_URL = https://10.0.0.1:5555", ""), "no DIRECTOR_URL: set it in [director]"},
		{"two urls", good + "[director]\nDIRECTOR_URL = https://other\n", "DIRECTOR_URL in [conpaas] (https://10.0.0.1:5555) differs from the one in [director]"},
		{"http url", repl("https://10.0.0.1", "http://10.0.0.1"), "director.cfg:2: DIRECTOR_URL \"http://10.0.0.1:5555\" must use https"},
		{"path url", repl(":5555", ":5555/x"), "must be only scheme, host and port"},
		{"bad driver", repl("DRIVER = EC2", "DRIVER = vmware"), "director.cfg:5: [iaas] DRIVER = vmware is not supported"},
		{"no user", repl("USER = AK\n", ""), "director.cfg:4: [iaas] (DRIVER = ec2) needs the EC2 access key id: set USER"},
		{"bad region", repl("ec2.us-west-2.amazonaws.com", "moon"), "director.cfg:8: REGION \"moon\" is not an EC2 region"},
		{"no image", repl("IMAGE_ID = ami-1\n", ""), "director.cfg:4: [iaas] needs an image"},
		{"both images", repl("IMAGE_ID = ami-1", "IMAGE_ID = ami-1\nIMAGE = catalogue:conpaas"), "director.cfg:10: [iaas] sets both IMAGE_ID (line 9) and IMAGE"},
		{"bad ref", repl("IMAGE_ID = ami-1", "IMAGE = conpaas"), "director.cfg:9: IMAGE = conpaas: expected catalogue:NAME"},
		{"os key on ec2", repl("SIZE = t3.small", "SIZE = t3.small\nFLAVOR = m1"), "director.cfg:11: FLAVOR is an OpenStack setting"},
		{"openstack no host", good + "OTHER_CLOUDS = os\n[os]\nDRIVER = openstack\nUSER = u\nPASSWORD = p\nSIZE_ID = m1\nIMAGE_ID = c\nSECURITY_GROUP_NAME = d\nKEY_NAME = k\n",
			"director.cfg:14: [os] (DRIVER = openstack) needs the controller: set HOST"},
		{"bad arch", repl("SIZE = t3.small", "SIZE = t3.small\nARCH = sparc"), "director.cfg:11: ARCH = sparc"},
		{"indented", repl("[iaas]", "  KEY = v\n[iaas]"), "director.cfg:4: indented line does not continue a value"},
		{"bad database", good + "[director]\nDATABASE_URI = oracle://x/y\n", `director.cfg:14: DATABASE_URI: database "oracle" is not supported`},
		{"bad bool", repl("[iaas]", "SUPPORT_EXTERNAL_IDP = maybe\n[iaas]"), "director.cfg:4: SUPPORT_EXTERNAL_IDP = maybe: not a boolean"},
		// url.Parse takes any digits as a port: these passed `check` and
		// only failed when serve listened.
		{"port 0", repl(":5555", ":0"), `director.cfg:2: DIRECTOR_URL "https://10.0.0.1:0": port 0 is not a port number`},
		{"port too big", repl(":5555", ":99999"), `director.cfg:2: DIRECTOR_URL "https://10.0.0.1:99999": port 99999 is not a port number`},
		{"listen port too big", repl("[iaas]", "LISTEN = 127.0.0.1:70000\n[iaas]"), `director.cfg:4: LISTEN "127.0.0.1:70000" is not HOST:PORT`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("director.cfg", []byte(tc.cfg))
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.cfg)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q\nwant %q", err, tc.want)
			}
		})
	}
}

// DATABASE_URI as SQLAlchemy read it in the original.
func TestDatabaseURI(t *testing.T) {
	cases := []struct{ uri, driver, path, dsn string }{
		{"sqlite:////etc/cpsdirector/director.db", "sqlite", "/etc/cpsdirector/director.db", ""},
		{"sqlite:///director-test.db", "sqlite", "/conf/director-test.db", ""},
		{"mysql://conpaas:s3cret@db.example.org/director", "mysql", "", "conpaas:s3cret@tcp(db.example.org:3306)/director?"},
		{"mysql+pymysql://u:p@127.0.0.1:3307/d", "mysql", "", "u:p@tcp(127.0.0.1:3307)/d?"},
		{"postgresql://u:p%40ss@127.0.0.1:5433/d", "postgres", "", "postgres://u:p%40ss@127.0.0.1:5433/d"},
		{"postgresql+psycopg2://u@h/d?sslmode=disable", "postgres", "", "postgres://u@h/d?sslmode=disable"},
	}
	for _, c := range cases {
		d, err := ParseDatabaseURI(c.uri, "/conf")
		if err != nil {
			t.Errorf("%s: %v", c.uri, err)
			continue
		}
		if d.Driver != c.driver || d.Path != c.path || !strings.HasPrefix(d.DSN, c.dsn) {
			t.Errorf("%s: %+v", c.uri, d)
		}
	}
	d, _ := ParseDatabaseURI("mysql://u:hunter2@h/d", "/")
	if strings.Contains(d.Redacted(), "hunter2") {
		t.Errorf("Redacted %s", d.Redacted())
	}
	for _, bad := range []string{"director.db", "sqlite://", "mysql://h", "mongodb://h/d"} {
		if _, err := ParseDatabaseURI(bad, "/"); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestLoadMissing(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "director.cfg"))
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatal(err)
	}
	// A directory given as --config said only "read d: is a directory".
	dir := t.TempDir()
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "is a directory: pass --config with the path of the director.cfg file itself") {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "d.cfg")
	os.WriteFile(p, []byte(good), 0o600)
	if _, err := Load(p); err != nil {
		t.Fatal(err)
	}
	// LISTEN :0 (any free port) and service names still work.
	for _, l := range []string{":0", "127.0.0.1:https", "[::1]:5555"} {
		if c, err := Parse("d.cfg", []byte(strings.Replace(good, "[iaas]", "LISTEN = "+l+"\n[iaas]", 1))); err != nil || c.Listen != l {
			t.Errorf("LISTEN = %s: %v", l, err)
		}
	}
}
