package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// DefaultPath is where the seeds' installer puts the configuration.
const DefaultPath = "/etc/cpsdirector/director.cfg"

// Drivers.
const (
	DriverEC2       = "ec2"
	DriverOpenStack = "openstack"
)

// DefaultCloud is the name of the cloud described by the [iaas] section.
const DefaultCloud = "iaas"

// Config is a validated director.cfg.
type Config struct {
	Path        string
	DirectorURL *url.URL
	// Host is the host part of DIRECTOR_URL: the server certificate's
	// commonName and SAN must equal it.
	Host string
	// Listen is the address serve binds (LISTEN, default: all interfaces on
	// DIRECTOR_URL's port).
	Listen        string
	ConfDir       string
	CertDir       string
	DBPath        string
	CataloguePath string
	// TarballPath is ConPaaS.tar.gz, which managers download at boot.
	TarballPath string
	// Clouds lists [iaas] first, then OTHER_CLOUDS in their order.
	Clouds []Cloud
}

// ImageRef is IMAGE = catalogue:NAME[@VERSION].
type ImageRef struct {
	Name    string
	Version string // empty: newest
}

func (r ImageRef) String() string {
	if r.Version == "" {
		return "catalogue:" + r.Name
	}
	return "catalogue:" + r.Name + "@" + r.Version
}

// Cloud is one cloud the director can start managers on.
type Cloud struct {
	Name   string // "iaas" or the OTHER_CLOUDS section name
	Line   int    // line of the section header, for messages
	Driver string // ec2 | openstack

	// EC2: USER / PASSWORD are the access and secret keys (as in the
	// original cpsdirector); ENDPOINT overrides the regional endpoint.
	// OpenStack: USER / PASSWORD, AUTH_URL, PROJECT, DOMAIN.
	User     string
	Password string
	Endpoint string
	AuthURL  string
	Project  string
	Domain   string
	// CloudName selects OpenStack catalogue registrations (the clouds.yaml
	// entry they were registered with); empty matches any.
	CloudName string
	Region    string
	Arch      string

	ImageID  string    // IMAGE_ID: used as is
	ImageRef *ImageRef // IMAGE = catalogue:...: resolved from the catalogue

	InstanceType  string // SIZE / INST_TYPE (EC2) or FLAVOR (OpenStack)
	SecurityGroup string
	KeyName       string
}

var (
	conpaasKeys = keyset("DIRECTOR_URL", "CONF_DIR", "CERT_DIR", "DB", "CATALOGUE", "CONPAAS_TARBALL", "LISTEN", "DEPLOYMENT_NAME")
	cloudKeys   = keyset("DRIVER", "USER", "PASSWORD", "ENDPOINT", "AUTH_URL", "PROJECT", "TENANT", "DOMAIN", "CLOUD_NAME",
		"REGION", "ARCH", "IMAGE_ID", "IMAGE", "SIZE", "SIZE_ID", "INST_TYPE", "INSTANCE_TYPE", "FLAVOR",
		"SECURITY_GROUP_NAME", "KEY_NAME", "OTHER_CLOUDS")
	cloudNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	imageRefRE  = regexp.MustCompile(`^catalogue:([A-Za-z0-9][A-Za-z0-9_.+-]*)(?:@([A-Za-z0-9][A-Za-z0-9_.+~-]*))?$`)
	archs       = keyset("amd64", "arm64", "armhf")
)

func keyset(ks ...string) map[string]bool {
	m := map[string]bool{}
	for _, k := range ks {
		m[k] = true
	}
	return m
}

// Load reads and validates the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s does not exist: copy director.cfg.example there and edit it, or pass --config", path)
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse validates data as the config file path.
func Parse(path string, data []byte) (*Config, error) {
	f, err := parseINI(path, data)
	if err != nil {
		return nil, err
	}
	c := &Config{Path: path}
	lerr := func(line int, format string, a ...any) error {
		return &LineError{Path: path, Line: line, Msg: fmt.Sprintf(format, a...)}
	}

	cp := f.section("conpaas")
	if cp == nil {
		return nil, lerr(0, "missing [conpaas] section: it must set DIRECTOR_URL = https://HOST[:PORT]")
	}
	if err := checkKeys(path, cp, conpaasKeys); err != nil {
		return nil, err
	}
	u, line, ok := cp.get("DIRECTOR_URL")
	if !ok || u == "" {
		return nil, lerr(line, "[conpaas] has no DIRECTOR_URL: set it to the director's public URL, e.g. https://director.example.org:5555")
	}
	du, err := url.Parse(u)
	if err != nil || du.Host == "" || du.Hostname() == "" {
		return nil, lerr(line, "DIRECTOR_URL %q is not a URL like https://HOST[:PORT]", u)
	}
	if du.Scheme != "https" {
		return nil, lerr(line, "DIRECTOR_URL %q must use https: the director only speaks TLS", u)
	}
	if du.Path != "" && du.Path != "/" || du.RawQuery != "" || du.User != nil {
		return nil, lerr(line, "DIRECTOR_URL %q must be only scheme, host and port (no path, query or user)", u)
	}
	du.Path = ""
	c.DirectorURL = du
	c.Host = du.Hostname()
	port := du.Port()
	if port == "" {
		port = "443"
	}

	c.ConfDir = filepath.Dir(path)
	if v, _, ok := cp.get("CONF_DIR"); ok && v != "" {
		c.ConfDir = v
	}
	def := func(key, d string) string {
		if v, _, ok := cp.get(key); ok && v != "" {
			return v
		}
		return d
	}
	c.CertDir = def("CERT_DIR", filepath.Join(c.ConfDir, "certs"))
	c.DBPath = def("DB", filepath.Join(c.ConfDir, "director.db"))
	c.CataloguePath = def("CATALOGUE", filepath.Join(c.ConfDir, "catalogue.json"))
	c.TarballPath = def("CONPAAS_TARBALL", filepath.Join(c.ConfDir, "ConPaaS.tar.gz"))
	c.Listen = def("LISTEN", ":"+port)
	if v, line, ok := cp.get("LISTEN"); ok {
		if _, _, err := net.SplitHostPort(v); err != nil {
			return nil, lerr(line, "LISTEN %q is not HOST:PORT (e.g. :5555 or 127.0.0.1:5555)", v)
		}
	}

	ia := f.section("iaas")
	if ia == nil {
		return nil, lerr(0, "missing [iaas] section: it describes the default cloud (DRIVER = ec2 or openstack)")
	}
	used := map[string]bool{"conpaas": true, "iaas": true}
	main, err := parseCloud(path, DefaultCloud, ia, true)
	if err != nil {
		return nil, err
	}
	c.Clouds = append(c.Clouds, *main)
	if oc, line, ok := ia.get("OTHER_CLOUDS"); ok && oc != "" {
		for _, name := range strings.Split(oc, ",") {
			name = strings.TrimSpace(name)
			if name == "" {
				continue
			}
			if !cloudNameRE.MatchString(name) {
				return nil, lerr(line, "OTHER_CLOUDS: %q is not a valid cloud name (letters, digits, '.', '_', '-')", name)
			}
			key := strings.ToLower(name)
			if used[key] {
				return nil, lerr(line, "OTHER_CLOUDS names %q twice or names a reserved section", name)
			}
			s := f.section(name)
			if s == nil {
				return nil, lerr(line, "OTHER_CLOUDS names cloud %q but there is no [%s] section: add one (see director.cfg.multicloud-example) or remove the name", name, name)
			}
			used[key] = true
			cl, err := parseCloud(path, s.Name, s, false)
			if err != nil {
				return nil, err
			}
			c.Clouds = append(c.Clouds, *cl)
		}
	}
	for _, k := range f.Order {
		if !used[k] {
			s := f.Sections[k]
			return nil, lerr(s.Line, "section [%s] is not used: list it in OTHER_CLOUDS in [iaas] or remove it", s.Name)
		}
	}
	return c, nil
}

func checkKeys(path string, s *section, known map[string]bool) error {
	for _, k := range s.Order {
		if !known[k] {
			names := make([]string, 0, len(known))
			for n := range known {
				names = append(names, n)
			}
			sort.Strings(names)
			return &LineError{Path: path, Line: s.Keys[k].Line,
				Msg: fmt.Sprintf("unknown key %s in [%s] (known: %s)", k, s.Name, strings.Join(names, ", "))}
		}
	}
	return nil
}

func parseCloud(path, name string, s *section, isDefault bool) (*Cloud, error) {
	lerr := func(line int, format string, a ...any) error {
		return &LineError{Path: path, Line: line, Msg: fmt.Sprintf(format, a...)}
	}
	if err := checkKeys(path, s, cloudKeys); err != nil {
		return nil, err
	}
	if !isDefault {
		if _, line, ok := s.get("OTHER_CLOUDS"); ok {
			return nil, lerr(line, "OTHER_CLOUDS belongs in [iaas] only")
		}
	}
	c := &Cloud{Name: name, Line: s.Line}
	d, line, ok := s.get("DRIVER")
	if !ok || d == "" {
		return nil, lerr(line, "[%s] has no DRIVER: set DRIVER = ec2 or DRIVER = openstack", s.Name)
	}
	c.Driver = strings.ToLower(d)
	if c.Driver != DriverEC2 && c.Driver != DriverOpenStack {
		return nil, lerr(line, "[%s] DRIVER = %s is not supported: use ec2 or openstack", s.Name, d)
	}
	require := func(what string, keys ...string) (string, error) {
		v, _, _ := s.first(keys...)
		if v == "" {
			return "", lerr(s.Line, "[%s] (DRIVER = %s) needs %s: set %s", s.Name, c.Driver, what, keys[0])
		}
		return v, nil
	}
	var err error
	c.Arch = "amd64"
	if v, line, ok := s.get("ARCH"); ok && v != "" {
		if !archs[v] {
			return nil, lerr(line, "ARCH = %s: use amd64, arm64 or armhf", v)
		}
		c.Arch = v
	}
	c.Endpoint, _, _ = s.first("ENDPOINT")
	if c.Endpoint != "" {
		if u, err := url.Parse(c.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, lerr(s.Keys["ENDPOINT"].Line, "ENDPOINT %q is not an http(s) URL", c.Endpoint)
		}
	}
	switch c.Driver {
	case DriverEC2:
		if c.User, err = require("the EC2 access key id", "USER"); err != nil {
			return nil, err
		}
		if c.Password, err = require("the EC2 secret access key", "PASSWORD"); err != nil {
			return nil, err
		}
		r, err := require("the EC2 region (e.g. us-east-1)", "REGION")
		if err != nil {
			return nil, err
		}
		// The original director.cfg used endpoint host names such as
		// ec2.us-east-1.amazonaws.com; accept them and keep the region.
		if m := regexp.MustCompile(`^ec2\.([a-z0-9-]+)\.amazonaws\.com$`).FindStringSubmatch(r); m != nil {
			r = m[1]
		}
		if !regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`).MatchString(r) {
			return nil, lerr(s.Keys["REGION"].Line, "REGION %q is not an EC2 region name like us-east-1", r)
		}
		c.Region = r
		if c.InstanceType, err = require("an instance type (e.g. t3.small)", "SIZE", "SIZE_ID", "INST_TYPE", "INSTANCE_TYPE"); err != nil {
			return nil, err
		}
		for _, k := range []string{"AUTH_URL", "PROJECT", "TENANT", "DOMAIN", "FLAVOR"} {
			if _, line, ok := s.get(k); ok {
				return nil, lerr(line, "%s is an OpenStack setting but [%s] has DRIVER = ec2", k, s.Name)
			}
		}
	case DriverOpenStack:
		au, err := require("the Keystone URL (e.g. http://controller:5000/v3)", "AUTH_URL")
		if err != nil {
			return nil, err
		}
		if u, err := url.Parse(au); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, lerr(s.Keys["AUTH_URL"].Line, "AUTH_URL %q is not an http(s) URL", au)
		}
		c.AuthURL = au
		if c.User, err = require("the OpenStack user name", "USER"); err != nil {
			return nil, err
		}
		if c.Password, err = require("the OpenStack password", "PASSWORD"); err != nil {
			return nil, err
		}
		if c.Project, err = require("the OpenStack project", "PROJECT", "TENANT"); err != nil {
			return nil, err
		}
		c.Domain, _, _ = s.first("DOMAIN")
		if c.Domain == "" {
			c.Domain = "Default"
		}
		c.Region, _, _ = s.first("REGION")
		c.CloudName, _, _ = s.first("CLOUD_NAME")
		if c.InstanceType, err = require("a flavor (e.g. m1.small)", "FLAVOR", "SIZE", "SIZE_ID", "INST_TYPE", "INSTANCE_TYPE"); err != nil {
			return nil, err
		}
		if _, line, ok := s.get("ENDPOINT"); ok {
			return nil, lerr(line, "ENDPOINT is an EC2 setting; OpenStack endpoints come from the Keystone catalogue of AUTH_URL")
		}
	}
	id, idLine, hasID := s.get("IMAGE_ID")
	ref, refLine, hasRef := s.get("IMAGE")
	switch {
	case hasID && hasRef:
		return nil, lerr(refLine, "[%s] sets both IMAGE_ID (line %d) and IMAGE: keep one", s.Name, idLine)
	case hasID && id != "":
		c.ImageID = id
	case hasRef && ref != "":
		m := imageRefRE.FindStringSubmatch(ref)
		if m == nil {
			return nil, lerr(refLine, "IMAGE = %s: expected catalogue:NAME or catalogue:NAME@VERSION (or use IMAGE_ID = the cloud's image id)", ref)
		}
		c.ImageRef = &ImageRef{Name: m[1], Version: m[2]}
	default:
		return nil, lerr(s.Line, "[%s] needs an image: set IMAGE = catalogue:conpaas (resolved from the cpsimage catalogue) or IMAGE_ID = the cloud's image id", s.Name)
	}
	if c.SecurityGroup, err = require("a security group", "SECURITY_GROUP_NAME"); err != nil {
		return nil, err
	}
	if c.KeyName, err = require("a key pair name", "KEY_NAME"); err != nil {
		return nil, err
	}
	return c, nil
}

// Cloud returns the cloud named name.
func (c *Config) Cloud(name string) (*Cloud, bool) {
	for i := range c.Clouds {
		if c.Clouds[i].Name == name {
			return &c.Clouds[i], true
		}
	}
	return nil, false
}

// CloudNames lists the configured clouds.
func (c *Config) CloudNames() []string {
	var n []string
	for _, cl := range c.Clouds {
		n = append(n, cl.Name)
	}
	return n
}
