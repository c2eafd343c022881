// Package userdata renders the boot script a manager VM receives as cloud
// user-data: the director's CA, the manager's own certificate, and the
// /root/config.cfg that names DIRECTOR_URL and BOOTSTRAP (the URL
// ConPaaS.tar.gz is downloaded from, as the seeds' troubleshooting expects:
// `awk '/BOOTSTRAP/ { print $3 }' /root/config.cfg`).
package userdata

import (
	"bytes"
	"fmt"
	"regexp"
	"text/template"
)

// Manager is what one manager VM needs to know.
type Manager struct {
	DirectorURL string
	Bootstrap   string // normally DIRECTOR_URL
	Type        string // service type
	AppID       int64
	ServiceID   int64
	Cloud       string
	CACert      []byte // PEM
	Cert, Key   []byte // the manager's client certificate and key (PEM)
}

var safe = regexp.MustCompile(`^[A-Za-z0-9:/._\-\[\]]+$`)

var tmpl = template.Must(template.New("ud").Parse(`#!/bin/sh
# ConPaaS manager bootstrap, written by cpsdirector.
set -e
umask 077
mkdir -p /etc/cpsmanager/certs
cat > /etc/cpsmanager/certs/ca_cert.pem <<'CPS_EOF'
{{printf "%s" .CACert}}CPS_EOF
cat > /etc/cpsmanager/certs/cert.pem <<'CPS_EOF'
{{printf "%s" .Cert}}CPS_EOF
cat > /etc/cpsmanager/certs/key.pem <<'CPS_EOF'
{{printf "%s" .Key}}CPS_EOF
cat > /root/config.cfg <<'CPS_EOF'
[manager]
DIRECTOR_URL = {{.DirectorURL}}
BOOTSTRAP = {{.Bootstrap}}
TYPE = {{.Type}}
APP_ID = {{.AppID}}
SERVICE_ID = {{.ServiceID}}
CLOUD = {{.Cloud}}
CPS_EOF
cd /root
wget -q --ca-certificate /etc/cpsmanager/certs/ca_cert.pem -O ConPaaS.tar.gz {{.Bootstrap}}/ConPaaS.tar.gz
tar -xzf ConPaaS.tar.gz
exec /root/ConPaaS/sbin/manager/{{.Type}}-cpsmanager -c /root/config.cfg >/root/manager.out 2>/root/manager.err
`))

// Render returns the script. Values that end up unquoted in shell are
// checked against a conservative character set.
func Render(m Manager) ([]byte, error) {
	for name, v := range map[string]string{"DIRECTOR_URL": m.DirectorURL, "BOOTSTRAP": m.Bootstrap, "type": m.Type, "cloud": m.Cloud} {
		if !safe.MatchString(v) {
			return nil, fmt.Errorf("user-data: %s %q has characters unsafe in a shell script", name, v)
		}
	}
	for name, p := range map[string][]byte{"CA": m.CACert, "cert": m.Cert, "key": m.Key} {
		if bytes.Contains(p, []byte("CPS_EOF")) || len(p) == 0 || p[len(p)-1] != '\n' {
			return nil, fmt.Errorf("user-data: %s is not a PEM block", name)
		}
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, m); err != nil {
		return nil, err
	}
	// EC2 rejects user data over 16 KiB.
	if b.Len() > 16384 {
		return nil, fmt.Errorf("user-data is %d bytes, over the 16 KiB EC2 limit", b.Len())
	}
	return b.Bytes(), nil
}
