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
	"strconv"
	"strings"
	"time"
)

// DefaultPath is where the original installer put the configuration.
const DefaultPath = "/etc/cpsdirector/director.cfg"

// Drivers.
const (
	DriverEC2       = "ec2"
	DriverOpenStack = "openstack"
	DriverDummy     = "dummy"
)

// DefaultCloud is the name of the cloud described by the [iaas] section
// (the API calls it "default", as the original did).
const DefaultCloud = "iaas"

// DefaultMaxCredit is the original's default_max_credit.
const DefaultMaxCredit = 50

// Config is a validated director.cfg.
type Config struct {
	Path        string
	DirectorURL *url.URL
	// Host is the host part of DIRECTOR_URL: the server certificate's
	// commonName and SAN must equal it.
	Host string
	// Listen is the address serve binds (LISTEN, default: all interfaces on
	// DIRECTOR_URL's port).
	Listen  string
	ConfDir string
	CertDir string
	// Database is DATABASE_URI, parsed.
	Database      Database
	UserDataDir   string
	CataloguePath string
	// TarballPath is ConPaaS.tar.gz, which managers download at boot from
	// /download/ConPaaS.tar.gz.
	TarballPath    string
	Debug          bool
	DeploymentName string
	// MaxCredit caps the credit /new_user grants (MAX_CREDIT).
	MaxCredit          int
	SupportExternalIDP bool
	SupportOpenID      bool
	// DebugLevels are the [conpaas] *_debug_level integers
	// (/debug_level/<type>), keyed by the lower-cased type.
	DebugLevels map[string]int
	// ManagerPort and AgentPort are where the director reaches managers
	// (443) and agents (5555); tests move them.
	ManagerPort, AgentPort int
	// NodeTimeout bounds the wait for a new VM's manager or agent to answer
	// (the original waited 5 minutes).
	NodeTimeout time.Duration
	// Clouds lists [iaas] first (when it has a DRIVER), then OTHER_CLOUDS
	// in their order.
	Clouds []Cloud
	// OtherClouds are the OTHER_CLOUDS names that have a section, in order
	// (/available_clouds lists them after "default").
	OtherClouds []string
	// Warnings are keys and sections the director accepts but does not
	// act on, as "file:line: message".
	Warnings []string
}

// Database is a parsed DATABASE_URI.
type Database struct {
	URI    string // as written (password and all: never log it)
	Driver string // sqlite, mysql or postgres
	// Path is the SQLite file.
	Path string
	// DSN is the Go driver's data source name (mysql, postgres).
	DSN string
}

// Redacted names the database for messages: the SQLite file, or the URI
// without its password.
func (d Database) Redacted() string {
	if d.Driver == "sqlite" {
		return d.Path
	}
	u, err := url.Parse(d.URI)
	if err != nil || u.User == nil {
		return d.URI
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
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

// Cloud is one cloud the director can start VMs on.
type Cloud struct {
	Name   string // "iaas" or the OTHER_CLOUDS section name
	Line   int    // line of the section header, for messages
	Driver string // ec2 | openstack | dummy

	// EC2: USER / PASSWORD are the access and secret keys (as in the
	// original); ENDPOINT overrides the regional endpoint.
	// OpenStack: USER / PASSWORD, AUTH_URL (or the original's HOST),
	// PROJECT (default: USER, the original's tenant), DOMAIN.
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

	InstanceType  string // SIZE_ID (EC2 type or OpenStack flavor name/id)
	SecurityGroup string
	KeyName       string
	// Network is NETWORK_ID (OpenStack, id or name).
	Network string
	// FloatingIP is AUTO_ASSIGN_FLOATING_IP = false: the director
	// associates floating addresses itself.
	FloatingIP bool
}

// APIName is the cloud's name in the protocol: the [iaas] cloud is "default".
func (c Cloud) APIName() string {
	if c.Name == DefaultCloud {
		return "default"
	}
	return c.Name
}

// Keys the original director read, and ours. Anything else is reported as
// a warning (the original's ConfigParser ignored unknown keys too).
var (
	directorKeys = keyset("DEBUG", "DATABASE_URI", "USERDATA_DIR", "DIRECTOR_URL",
		"LISTEN", "MANAGER_PORT", "AGENT_PORT", "NODE_TIMEOUT")
	conpaasKeys = keyset("CONF_DIR", "CERT_DIR", "DEPLOYMENT_NAME", "SUPPORT_EXTERNAL_IDP", "SUPPORT_OPENID",
		"EXTERNAL_IDPS", "MAX_CREDIT", "VPN_BASE_NETWORK", "VPN_NETMASK", "VPN_SERVICE_BITS", "VPN_BOOTSTRAP_NODES",
		"DIRECTOR_URL", "DB", "CATALOGUE", "CONPAAS_TARBALL", "LISTEN")
	cloudKeys = keyset("DRIVER", "USER", "PASSWORD", "HOST", "ENDPOINT", "AUTH_URL", "PROJECT", "TENANT", "DOMAIN", "CLOUD_NAME",
		"REGION", "ARCH", "IMAGE_ID", "IMAGE", "SIZE", "SIZE_ID", "INST_TYPE", "INSTANCE_TYPE", "FLAVOR",
		"SECURITY_GROUP_NAME", "KEY_NAME", "NETWORK_ID", "AUTO_ASSIGN_FLOATING_IP", "OTHER_CLOUDS")
	// Keys of the original we accept without acting on them: they only fed
	// code paths the original itself had commented out (HTC's cost model,
	// IPOP VPNs) or its OpenNebula/federation drivers.
	inertCloudKeys = keyset("MAX_VMS", "MAX_VMS_ALL_CLOUDS", "COST_PER_TIME")
	cloudNameRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	imageRefRE     = regexp.MustCompile(`^catalogue:([A-Za-z0-9][A-Za-z0-9_.+-]*)(?:@([A-Za-z0-9][A-Za-z0-9_.+~-]*))?$`)
	archs          = keyset("amd64", "arm64", "armhf")
	debugLevelRE   = regexp.MustCompile(`^([A-Z0-9]+)_DEBUG_LEVEL$`)
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
		return nil, fmt.Errorf("%s does not exist: copy the example cmd/cpsdirector/director.cfg.example of the cps source tree there and edit it, or pass --config FILE", path)
	}
	if err != nil {
		if st, serr := os.Stat(path); serr == nil && st.IsDir() {
			return nil, fmt.Errorf("%s is a directory: pass --config with the path of the director.cfg file itself", path)
		}
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
	c := &Config{Path: path, Warnings: f.Warnings, DebugLevels: map[string]int{}}
	lerr := func(line int, format string, a ...any) error {
		return &LineError{Path: path, Line: line, Msg: fmt.Sprintf(format, a...)}
	}
	warn := func(line int, format string, a ...any) {
		c.Warnings = append(c.Warnings, (&LineError{Path: path, Line: line, Msg: fmt.Sprintf(format, a...)}).Error())
	}
	empty := &section{Keys: map[string]entry{}}
	cp := f.section("conpaas")
	if cp == nil {
		cp = empty
	}
	dir := f.section("director")
	if dir == nil {
		dir = empty
	}
	used := map[string]bool{"conpaas": true, "director": true, "iaas": true}
	c.warnUnknown(path, cp, conpaasKeys, func(k string) bool { return debugLevelRE.MatchString(k) })
	c.warnUnknown(path, dir, directorKeys, nil)

	// DIRECTOR_URL: the original's [director] key; cps also read it from
	// [conpaas]. Both may be set if they agree.
	u, line, ok := dir.get("DIRECTOR_URL")
	if u2, line2, ok2 := cp.get("DIRECTOR_URL"); ok2 {
		if ok && u != u2 {
			return nil, lerr(line2, "DIRECTOR_URL in [conpaas] (%s) differs from the one in [director] at line %d (%s): keep one", u2, line, u)
		}
		u, line, ok = u2, line2, true
	}
	if !ok || u == "" {
		return nil, lerr(line, "no DIRECTOR_URL: set it in [director] to the director's public URL, e.g. DIRECTOR_URL = https://director.example.org:5555 (cpsconf.py used to write it)")
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
	// url.Parse takes any digits as the port; 0 or 99999 only failed
	// later, when serve listened (and `check` said nothing).
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, lerr(line, "DIRECTOR_URL %q: port %s is not a port number (1 to 65535)", u, port)
	}

	c.ConfDir = filepath.Dir(path)
	if v, _, ok := cp.get("CONF_DIR"); ok && v != "" {
		c.ConfDir = v
	}
	def := func(s *section, key, d string) string {
		if v, _, ok := s.get(key); ok && v != "" {
			return v
		}
		return d
	}
	c.CertDir = def(cp, "CERT_DIR", filepath.Join(c.ConfDir, "certs"))
	c.UserDataDir = def(dir, "USERDATA_DIR", filepath.Join(c.ConfDir, "data"))
	c.CataloguePath = def(cp, "CATALOGUE", filepath.Join(c.ConfDir, "catalogue.json"))
	c.TarballPath = def(cp, "CONPAAS_TARBALL", filepath.Join(c.ConfDir, "ConPaaS.tar.gz"))
	c.DeploymentName = def(cp, "DEPLOYMENT_NAME", "conpaas")
	if !cloudNameRE.MatchString(c.DeploymentName) {
		return nil, lerr(cp.Keys["DEPLOYMENT_NAME"].Line, "DEPLOYMENT_NAME %q: use letters, digits, '.', '_' and '-' (it names the VMs)", c.DeploymentName)
	}

	// DATABASE_URI as the original read it; cps's DB = PATH still works.
	uri, uline, hasURI := dir.get("DATABASE_URI")
	if p, pline, ok := cp.get("DB"); ok && p != "" {
		if hasURI {
			return nil, lerr(pline, "DB in [conpaas] and DATABASE_URI in [director] (line %d) both name the database: keep DATABASE_URI", uline)
		}
		uri, uline, hasURI = "sqlite:///"+p, pline, true
		if !filepath.IsAbs(p) {
			uri = "sqlite:///" + filepath.Join(c.ConfDir, p)
		}
	}
	if !hasURI || uri == "" {
		uri = "sqlite:///" + filepath.Join(c.ConfDir, "director.db")
	}
	if c.Database, err = ParseDatabaseURI(uri, c.ConfDir); err != nil {
		return nil, lerr(uline, "DATABASE_URI: %v", err)
	}

	if v, line, ok := dir.get("DEBUG"); ok {
		if c.Debug, err = parseBool(v); err != nil {
			return nil, lerr(line, "DEBUG = %s: %v", v, err)
		}
	}
	listen := ""
	for _, s := range []*section{cp, dir} {
		if v, line, ok := s.get("LISTEN"); ok {
			_, lp, err := net.SplitHostPort(v)
			if n, nerr := strconv.Atoi(lp); err != nil || nerr == nil && (n < 0 || n > 65535) {
				return nil, lerr(line, "LISTEN %q is not HOST:PORT (e.g. :5555 or 127.0.0.1:5555)", v)
			}
			listen = v
		}
	}
	c.Listen = listen
	if c.Listen == "" {
		c.Listen = ":" + port
	}
	c.ManagerPort, c.AgentPort = 443, 5555
	for key, dst := range map[string]*int{"MANAGER_PORT": &c.ManagerPort, "AGENT_PORT": &c.AgentPort} {
		if v, line, ok := dir.get(key); ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 65535 {
				return nil, lerr(line, "%s = %s is not a port number", key, v)
			}
			*dst = n
		}
	}
	c.NodeTimeout = 5 * time.Minute
	if v, line, ok := dir.get("NODE_TIMEOUT"); ok {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, lerr(line, "NODE_TIMEOUT = %s is not a duration like 5m", v)
		}
		c.NodeTimeout = d
	}

	// MAX_CREDIT: the original logged and fell back to 50 on a bad value.
	c.MaxCredit = DefaultMaxCredit
	if v, line, ok := cp.get("MAX_CREDIT"); ok {
		n, err := strconv.Atoi(v)
		switch {
		case err != nil:
			warn(line, "MAX_CREDIT %q is not a valid integer: using %d, as the original did", v, DefaultMaxCredit)
		case n < 0:
			warn(line, "MAX_CREDIT %d cannot be negative: using %d, as the original did", n, DefaultMaxCredit)
		default:
			c.MaxCredit = n
		}
	}
	for key, dst := range map[string]*bool{"SUPPORT_EXTERNAL_IDP": &c.SupportExternalIDP, "SUPPORT_OPENID": &c.SupportOpenID} {
		if v, line, ok := cp.get(key); ok {
			if *dst, err = parseBool(v); err != nil {
				return nil, lerr(line, "%s = %s: %v", key, v, err)
			}
		}
	}
	if c.SupportExternalIDP || c.SupportOpenID {
		warn(0, "SUPPORT_EXTERNAL_IDP / SUPPORT_OPENID: cpsdirector has no OpenID login pages; logins by uuid and openid (the values an identity provider assigned) are accepted")
	}
	if v, _, ok := cp.get("EXTERNAL_IDPS"); ok && v != "" {
		for _, n := range strings.Split(v, ",") {
			used[strings.ToLower(strings.TrimSpace(n))] = true
		}
	}
	for _, k := range cp.Order {
		if m := debugLevelRE.FindStringSubmatch(k); m != nil {
			n, err := strconv.Atoi(cp.Keys[k].Value)
			if err != nil {
				return nil, lerr(cp.Keys[k].Line, "%s = %s is not an integer", k, cp.Keys[k].Value)
			}
			c.DebugLevels[strings.ToLower(m[1])] = n
		}
	}

	ia := f.section("iaas")
	if ia == nil {
		warn(0, "no [iaas] section: no cloud is configured, so applications cannot start")
		ia = empty
	}
	if d, _, ok := ia.get("DRIVER"); ok && d != "" {
		cl, err := parseCloud(c, DefaultCloud, ia, true)
		if err != nil {
			return nil, err
		}
		if cl != nil {
			c.Clouds = append(c.Clouds, *cl)
		}
	} else if ia != empty {
		warn(ia.Line, "[iaas] has no DRIVER: the default cloud is not configured (uncomment DRIVER = ec2 or openstack and its settings)")
		c.warnUnknown(path, ia, cloudKeys, func(k string) bool { return inertCloudKeys[k] })
	}
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
			if used[key] || key == "default" {
				return nil, lerr(line, "OTHER_CLOUDS names %q twice or names a reserved section", name)
			}
			s := f.section(name)
			if s == nil {
				// The original silently skipped such names.
				warn(line, "OTHER_CLOUDS names cloud %q but there is no [%s] section: it is not available", name, name)
				continue
			}
			used[key] = true
			cl, err := parseCloud(c, s.Name, s, false)
			if err != nil {
				return nil, err
			}
			c.OtherClouds = append(c.OtherClouds, s.Name)
			if cl != nil {
				c.Clouds = append(c.Clouds, *cl)
			}
		}
	}
	for _, k := range f.Order {
		if !used[k] {
			s := f.Sections[k]
			warn(s.Line, "section [%s] is not used (list a cloud in OTHER_CLOUDS in [iaas])", s.Name)
		}
	}
	return c, nil
}

// warnUnknown records a warning for each key of s not in known (nor
// accepted by extra).
func (c *Config) warnUnknown(path string, s *section, known map[string]bool, extra func(string) bool) {
	for _, k := range s.Order {
		if known[k] || extra != nil && extra(k) {
			continue
		}
		c.Warnings = append(c.Warnings, (&LineError{Path: path, Line: s.Keys[k].Line,
			Msg: fmt.Sprintf("unknown key %s in [%s] is ignored (known: %s)", k, s.Name, strings.Join(sortedKeys(known), ", "))}).Error())
	}
}

func sortedKeys(m map[string]bool) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// parseBool accepts what Python's ConfigParser.getboolean accepted.
func parseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "1", "yes", "true", "on":
		return true, nil
	case "0", "no", "false", "off":
		return false, nil
	}
	return false, errors.New("not a boolean (true/false, yes/no, on/off, 1/0)")
}

// ParseDatabaseURI reads an SQLAlchemy URI as the original's
// DATABASE_URI: sqlite:////abs/path (sqlite:///rel/path is relative to
// dir), mysql://USER:PASS@HOST[:PORT]/DB (also mysql+pymysql:// and the
// like), postgresql://USER:PASS@HOST[:PORT]/DB.
func ParseDatabaseURI(uri, dir string) (Database, error) {
	d := Database{URI: uri}
	scheme, rest, ok := strings.Cut(uri, "://")
	if !ok {
		return d, fmt.Errorf("%q is not a URI like sqlite:////etc/cpsdirector/director.db or mysql://user:password@host/db", uri)
	}
	dialect, _, _ := strings.Cut(strings.ToLower(scheme), "+")
	switch dialect {
	case "sqlite":
		p := strings.TrimPrefix(rest, "/")
		if p == "" || strings.Contains(p, "?") {
			return d, fmt.Errorf("%q: give the database file, e.g. sqlite:////etc/cpsdirector/director.db (no :memory:, no options)", uri)
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		d.Driver, d.Path = "sqlite", filepath.Clean(p)
		return d, nil
	case "mysql", "mariadb", "postgresql", "postgres":
	default:
		return d, fmt.Errorf("database %q is not supported: use sqlite, mysql (MariaDB) or postgresql", scheme)
	}
	u, err := url.Parse("x://" + rest)
	if err != nil || u.Host == "" || strings.Trim(u.Path, "/") == "" {
		return d, fmt.Errorf("%s: expected %s://USER:PASSWORD@HOST[:PORT]/DATABASE", redact(uri), scheme)
	}
	user := u.User.Username()
	pass, _ := u.User.Password()
	db := strings.Trim(u.Path, "/")
	if dialect == "mysql" || dialect == "mariadb" {
		host := u.Host
		if u.Port() == "" {
			host += ":3306"
		}
		// utf8mb4 and UTC: SQLAlchemy's defaults on the original side were
		// latin1 and local time; the columns hold ASCII ids and names.
		d.Driver = "mysql"
		d.DSN = fmt.Sprintf("%s:%s@tcp(%s)/%s?charset=utf8mb4&collation=utf8mb4_bin&loc=UTC&parseTime=false&multiStatements=true&timeout=10s", user, pass, host, db)
		if q := u.Query().Get("unix_socket"); q != "" {
			d.DSN = fmt.Sprintf("%s:%s@unix(%s)/%s?charset=utf8mb4&collation=utf8mb4_bin&loc=UTC&parseTime=false&multiStatements=true&timeout=10s", user, pass, q, db)
		}
		return d, nil
	}
	pu := &url.URL{Scheme: "postgres", User: u.User, Host: u.Host, Path: "/" + db, RawQuery: u.RawQuery}
	d.Driver, d.DSN = "postgres", pu.String()
	return d, nil
}

func redact(uri string) string { return Database{URI: uri}.Redacted() }

func parseCloud(c *Config, name string, s *section, isDefault bool) (*Cloud, error) {
	path := c.Path
	lerr := func(line int, format string, a ...any) error {
		return &LineError{Path: path, Line: line, Msg: fmt.Sprintf(format, a...)}
	}
	c.warnUnknown(path, s, cloudKeys, func(k string) bool { return inertCloudKeys[k] })
	if !isDefault {
		if _, line, ok := s.get("OTHER_CLOUDS"); ok {
			return nil, lerr(line, "OTHER_CLOUDS belongs in [iaas] only")
		}
	}
	cl := &Cloud{Name: name, Line: s.Line}
	d, line, ok := s.get("DRIVER")
	if !ok || d == "" {
		return nil, lerr(s.Line, "[%s] has no DRIVER: set DRIVER = ec2, openstack or dummy", s.Name)
	}
	cl.Driver = strings.ToLower(d)
	switch cl.Driver {
	case DriverEC2, DriverOpenStack, DriverDummy:
	case "opennebula", "federation":
		c.Warnings = append(c.Warnings, (&LineError{Path: path, Line: line,
			Msg: fmt.Sprintf("[%s] DRIVER = %s is not supported by cpsdirector: this cloud is not available (use ec2 or openstack)", s.Name, d)}).Error())
		return nil, nil
	default:
		return nil, lerr(line, "[%s] DRIVER = %s is not supported: use ec2, openstack or dummy", s.Name, d)
	}
	require := func(what string, keys ...string) (string, error) {
		v, _, _ := s.first(keys...)
		if v == "" {
			return "", lerr(s.Line, "[%s] (DRIVER = %s) needs %s: set %s", s.Name, cl.Driver, what, keys[0])
		}
		return v, nil
	}
	var err error
	cl.Arch = "amd64"
	if v, line, ok := s.get("ARCH"); ok && v != "" {
		if !archs[v] {
			return nil, lerr(line, "ARCH = %s: use amd64, arm64 or armhf", v)
		}
		cl.Arch = v
	}
	cl.Endpoint, _, _ = s.first("ENDPOINT")
	if cl.Endpoint != "" {
		if u, err := url.Parse(cl.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, lerr(s.Keys["ENDPOINT"].Line, "ENDPOINT %q is not an http(s) URL", cl.Endpoint)
		}
	}
	cl.SecurityGroup, _, _ = s.first("SECURITY_GROUP_NAME")
	cl.KeyName, _, _ = s.first("KEY_NAME")
	switch cl.Driver {
	case DriverDummy:
		cl.ImageID, cl.InstanceType = "dummy", "dummy"
		return cl, nil
	case DriverEC2:
		if cl.User, err = require("the EC2 access key id", "USER"); err != nil {
			return nil, err
		}
		if cl.Password, err = require("the EC2 secret access key", "PASSWORD"); err != nil {
			return nil, err
		}
		r, err := require("the EC2 region (e.g. us-east-1)", "REGION")
		if err != nil {
			return nil, err
		}
		// The original used endpoint host names such as
		// ec2.us-east-1.amazonaws.com; accept them and keep the region.
		if m := regexp.MustCompile(`^ec2\.([a-z0-9-]+)\.amazonaws\.com$`).FindStringSubmatch(r); m != nil {
			r = m[1]
		}
		if !regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`).MatchString(r) {
			return nil, lerr(s.Keys["REGION"].Line, "REGION %q is not an EC2 region name like us-east-1", r)
		}
		cl.Region = r
		if cl.InstanceType, err = require("an instance type (e.g. t3.small)", "SIZE_ID", "SIZE", "INST_TYPE", "INSTANCE_TYPE"); err != nil {
			return nil, err
		}
		for _, k := range []string{"AUTH_URL", "HOST", "PROJECT", "TENANT", "DOMAIN", "FLAVOR", "NETWORK_ID", "AUTO_ASSIGN_FLOATING_IP"} {
			if _, line, ok := s.get(k); ok {
				return nil, lerr(line, "%s is an OpenStack setting but [%s] has DRIVER = ec2", k, s.Name)
			}
		}
	case DriverOpenStack:
		au, _, _ := s.first("AUTH_URL")
		if h, hline, ok := s.get("HOST"); ok && h != "" && au == "" {
			// The original talked Keystone v2.0 at http://HOST:5000; no
			// current Keystone serves v2.0, so cpsdirector uses v3 there.
			if strings.Contains(h, "/") {
				return nil, lerr(hline, "HOST %q must be a host name or address (set AUTH_URL for a full Keystone URL)", h)
			}
			au = "http://" + net.JoinHostPort(strings.Trim(h, "[]"), "5000") + "/v3"
		}
		if au == "" {
			return nil, lerr(s.Line, "[%s] (DRIVER = openstack) needs the controller: set HOST (Keystone at http://HOST:5000) or AUTH_URL", s.Name)
		}
		if u, err := url.Parse(au); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, lerr(s.Line, "AUTH_URL %q is not an http(s) URL", au)
		}
		cl.AuthURL = au
		if cl.User, err = require("the OpenStack user name", "USER"); err != nil {
			return nil, err
		}
		if cl.Password, err = require("the OpenStack password", "PASSWORD"); err != nil {
			return nil, err
		}
		cl.Project, _, _ = s.first("PROJECT", "TENANT")
		if cl.Project == "" {
			cl.Project = cl.User // the original's tenant was the user name
		}
		cl.Domain, _, _ = s.first("DOMAIN")
		if cl.Domain == "" {
			cl.Domain = "Default"
		}
		cl.Region, _, _ = s.first("REGION")
		cl.CloudName, _, _ = s.first("CLOUD_NAME")
		cl.Network, _, _ = s.first("NETWORK_ID")
		if v, line, ok := s.get("AUTO_ASSIGN_FLOATING_IP"); ok {
			auto, err := parseBool(v)
			if err != nil {
				return nil, lerr(line, "AUTO_ASSIGN_FLOATING_IP = %s: %v", v, err)
			}
			cl.FloatingIP = !auto
		}
		if cl.InstanceType, err = require("a flavor (e.g. m1.small)", "SIZE_ID", "FLAVOR", "SIZE", "INST_TYPE", "INSTANCE_TYPE"); err != nil {
			return nil, err
		}
		if _, line, ok := s.get("ENDPOINT"); ok {
			return nil, lerr(line, "ENDPOINT is an EC2 setting; OpenStack endpoints come from the Keystone catalogue of AUTH_URL")
		}
	}
	id, idLine, hasID := s.get("IMAGE_ID")
	ref, refLine, hasRef := s.get("IMAGE")
	switch {
	case hasID && hasRef && id != "" && ref != "":
		return nil, lerr(refLine, "[%s] sets both IMAGE_ID (line %d) and IMAGE: keep one", s.Name, idLine)
	case hasID && id != "":
		cl.ImageID = id
	case hasRef && ref != "":
		m := imageRefRE.FindStringSubmatch(ref)
		if m == nil {
			return nil, lerr(refLine, "IMAGE = %s: expected catalogue:NAME or catalogue:NAME@VERSION (or use IMAGE_ID = the cloud's image id)", ref)
		}
		cl.ImageRef = &ImageRef{Name: m[1], Version: m[2]}
	default:
		return nil, lerr(s.Line, "[%s] needs an image: set IMAGE_ID = the cloud's image id, or IMAGE = catalogue:conpaas (resolved from the cpsimage catalogue)", s.Name)
	}
	if cl.SecurityGroup == "" {
		return nil, lerr(s.Line, "[%s] (DRIVER = %s) needs a security group: set SECURITY_GROUP_NAME", s.Name, cl.Driver)
	}
	if cl.KeyName == "" {
		return nil, lerr(s.Line, "[%s] (DRIVER = %s) needs a key pair name: set KEY_NAME", s.Name, cl.Driver)
	}
	return cl, nil
}

// Cloud returns the cloud named name ("default", "None" and "" are the
// [iaas] cloud, as in the original).
func (c *Config) Cloud(name string) (*Cloud, bool) {
	if name == "" || name == "default" || name == "None" {
		name = DefaultCloud
	}
	for i := range c.Clouds {
		if c.Clouds[i].Name == name {
			return &c.Clouds[i], true
		}
	}
	return nil, false
}

// CloudNames lists the configured clouds by their API names.
func (c *Config) CloudNames() []string {
	var n []string
	for _, cl := range c.Clouds {
		n = append(n, cl.APIName())
	}
	return n
}
