// Package userdata writes the contextualization script a manager or agent
// VM receives as cloud user data, the way the original director's
// ManagerController and AgentController assembled it: the cloud's script
// (its addresses from the metadata service), the VM's certificate, key and
// the director's CA written to /tmp, the setup script (which moves them to
// /etc/cpsmanager/certs or /etc/cpsagent/certs, downloads ConPaaS.tar.gz
// from DIRECTOR_URL/download verified with that CA and unpacks it), the
// config.cfg the manager or agent reads, and its start script (which
// leaves /root/manager.pid or /root/agent.pid). The image's
// conpaas-contextualize runs it as a user-data script.
//
// The pieces are ConPaaS's own templates when the installation has them,
// as the original read them: CONF_DIR/scripts and CONF_DIR/config, else
// the scripts/ and config/ directories inside ConPaaS.tar.gz; cps's
// built-in equivalents otherwise.
package userdata

import (
	"bytes"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Templates gives the text of a ConPaaS template by its path under
// CONF_DIR ("scripts/cloud/ec2", "config/agent/web-agent.cfg", ...).
type Templates interface {
	Get(path string) ([]byte, bool)
}

// Manager is what one application manager VM needs.
type Manager struct {
	CloudType      string // ec2, openstack, dummy
	DirectorURL    string
	DeploymentName string
	UserID, AppID  int64
	Cert, Key, CA  []byte // PEM
}

// Agent is what one agent VM needs.
type Agent struct {
	CloudType      string
	DirectorURL    string
	DeploymentName string
	UserID, AppID  int64
	ServiceID      string
	ServiceType    string
	ManagerIP      string
	// Context are the manager's replacements for its agent configuration
	// (get_context_replacement).
	Context       map[string]string
	StartupScript string
	Cert, Key, CA []byte
}

// MaxSize is EC2's limit on user data.
const MaxSize = 16384

var (
	safeRE  = regexp.MustCompile(`^[A-Za-z0-9:/._\-\[\]]*$`)
	typeRE  = regexp.MustCompile(`^[a-z0-9_-]+$`)
	valueRE = regexp.MustCompile("^[^`$\\\\\n]*$")
)

func checkPEM(name string, p []byte) error {
	if len(p) == 0 || !bytes.HasPrefix(p, []byte("-----BEGIN ")) || bytes.Contains(p, []byte("\nEOF")) || bytes.ContainsAny(p, "$`\\") {
		return fmt.Errorf("user data: %s is not a PEM block", name)
	}
	return nil
}

func get(t Templates, path string) string {
	if t != nil {
		if b, ok := t.Get(path); ok {
			return string(b)
		}
	}
	return builtin[path]
}

func cloudScript(t Templates, cloudType string) string {
	s := get(t, "scripts/cloud/"+cloudType)
	if s == "" {
		s = builtin["scripts/cloud/"+cloudType]
	}
	if s == "" {
		s = builtin["scripts/cloud/ec2"]
	}
	// conpaas-contextualize runs user data that starts with "#!".
	if !strings.HasPrefix(s, "#!") {
		s = "#!/bin/bash\n" + s
	}
	return s
}

// heredoc is the original's "cat <<EOF > path" block.
func heredoc(path string, body []byte) string {
	return "cat <<EOF > " + path + "\n" + string(body) + "\n" + "EOF\n\n"
}

// Render writes a manager's context (ManagerController._generate_context_file).
func (m Manager) Render(t Templates) ([]byte, error) {
	if !safeRE.MatchString(m.DirectorURL) || !safeRE.MatchString(m.DeploymentName) || !typeRE.MatchString(m.CloudType) {
		return nil, fmt.Errorf("user data: director URL %q, deployment %q or cloud type %q has characters unsafe in a shell script", m.DirectorURL, m.DeploymentName, m.CloudType)
	}
	for name, p := range map[string][]byte{"certificate": m.Cert, "key": m.Key, "CA certificate": m.CA} {
		if err := checkPEM(name, p); err != nil {
			return nil, err
		}
	}
	setup := strings.ReplaceAll(get(t, "scripts/manager/manager-setup"), "%DIRECTOR_URL%", m.DirectorURL)
	cfg := get(t, "config/manager/default-manager-new.cfg")
	cfg = strings.NewReplacer("%CONPAAS_DEPLOYMENT_NAME%", m.DeploymentName,
		"%CONPAAS_USER_ID%", strconv.FormatInt(m.UserID, 10),
		"%CONPAAS_APP_ID%", strconv.FormatInt(m.AppID, 10)).Replace(cfg)
	var b strings.Builder
	b.WriteString(cloudScript(t, m.CloudType) + "\n\n")
	b.WriteString(heredoc("/tmp/cert.pem", m.Cert))
	b.WriteString(heredoc("/tmp/key.pem", m.Key))
	b.WriteString(heredoc("/tmp/ca_cert.pem", m.CA))
	b.WriteString(setup + "\n\n")
	b.WriteString(heredoc("$ROOT_DIR/config.cfg", []byte(cfg)) + "\n")
	b.WriteString(get(t, "scripts/manager/default-manager-start") + "\n\n")
	return sized(b.String())
}

// CheckFields checks what Render takes from the manager's request (all
// but the certificates), so a request that can make no agent is refused
// before any credit is taken or key generated.
func (a Agent) CheckFields() error {
	if !safeRE.MatchString(a.DirectorURL) || !typeRE.MatchString(a.ServiceType) || !typeRE.MatchString(a.CloudType) ||
		!safeRE.MatchString(a.ManagerIP) || !safeRE.MatchString(a.ServiceID) {
		return fmt.Errorf("user data: director URL %q, service type %q, cloud type %q, manager IP %q or service id %q has characters unsafe in a shell script",
			a.DirectorURL, a.ServiceType, a.CloudType, a.ManagerIP, a.ServiceID)
	}
	// The manager's replacements end up in a heredoc the shell expands:
	// nothing that could run a command.
	for k, v := range a.Context {
		if !identRE.MatchString(k) || !valueRE.MatchString(v) {
			return fmt.Errorf("user data: context value %s=%q has characters unsafe in a shell script", k, v)
		}
	}
	return nil
}

// Render writes an agent's context (AgentController._generate_context_file).
func (a Agent) Render(t Templates) ([]byte, error) {
	if err := a.CheckFields(); err != nil {
		return nil, err
	}
	for name, p := range map[string][]byte{"certificate": a.Cert, "key": a.Key, "CA certificate": a.CA} {
		if err := checkPEM(name, p); err != nil {
			return nil, err
		}
	}
	setup := SafeSubstitute(get(t, "scripts/agent/agent-setup"), map[string]string{"DIRECTOR": a.DirectorURL})
	cfg := SafeSubstitute(get(t, "config/agent/default-agent.cfg"), map[string]string{
		"AGENT_TYPE": a.ServiceType, "MANAGER_IP": a.ManagerIP,
		"CONPAAS_USER_ID": strconv.FormatInt(a.UserID, 10), "CONPAAS_SERVICE_ID": a.ServiceID, "CONPAAS_APP_ID": strconv.FormatInt(a.AppID, 10),
	})
	if extra, ok := lookup(t, "config/agent/"+a.ServiceType+"-agent.cfg"); ok {
		cfg += "\n" + SafeSubstitute(extra, a.Context)
	}
	start, ok := lookup(t, "scripts/agent/"+a.ServiceType+"-agent-start")
	if !ok {
		start = get(t, "scripts/agent/default-agent-start")
	}
	var b strings.Builder
	b.WriteString(cloudScript(t, a.CloudType) + "\n\n")
	b.WriteString(heredoc("/tmp/cert.pem", a.Cert))
	b.WriteString(heredoc("/tmp/key.pem", a.Key))
	b.WriteString(heredoc("/tmp/ca_cert.pem", a.CA))
	b.WriteString(setup + "\n\n")
	b.WriteString(heredoc("$ROOT_DIR/config.cfg", []byte(cfg)))
	if a.StartupScript != "" {
		b.WriteString(a.StartupScript + "\n")
	}
	b.WriteString(start + "\n")
	return sized(b.String())
}

func lookup(t Templates, path string) (string, bool) {
	if t != nil {
		if b, ok := t.Get(path); ok {
			return string(b), true
		}
	}
	s, ok := builtin[path]
	return s, ok
}

func sized(s string) ([]byte, error) {
	if len(s) > MaxSize {
		return nil, fmt.Errorf("user data is %d bytes, over the %d-byte EC2 limit (a long startup script?)", len(s), MaxSize)
	}
	return []byte(s), nil
}

var identRE = regexp.MustCompile(`^[_a-zA-Z][_a-zA-Z0-9]*$`)

// tmplRE is Python's string.Template pattern: $$, $name, ${name}.
var tmplRE = regexp.MustCompile(`\$(?:(\$)|([_a-zA-Z][_a-zA-Z0-9]*)|\{([_a-zA-Z][_a-zA-Z0-9]*)\})`)

// SafeSubstitute is Python's string.Template(s).safe_substitute(vars):
// $name and ${name} of known names are replaced, $$ becomes $, everything
// else is left for the shell.
func SafeSubstitute(s string, vars map[string]string) string {
	return tmplRE.ReplaceAllStringFunc(s, func(m string) string {
		sm := tmplRE.FindStringSubmatch(m)
		if sm[1] != "" {
			return "$"
		}
		name := sm[2] + sm[3]
		if v, ok := vars[name]; ok {
			return v
		}
		return m
	})
}

// Paths lists the template paths Render may read, for loading them from
// ConPaaS.tar.gz.
func Paths() []string {
	var p []string
	for k := range builtin {
		p = append(p, k)
	}
	sort.Strings(p)
	return p
}
