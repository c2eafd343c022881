// Package check diagnoses a director installation the way the seeds'
// cpscheck.py did, one finding per line with the fix: certificate vs
// DIRECTOR_URL, configuration keys it ignores, clock skew against each cloud, credentials, images in the
// catalogue and in the cloud, security-group ports, the database, and the
// ConPaaS.tar.gz download managers depend on.
package check

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/conpaas/cps/clouds/compute"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/certs"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/config"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/db"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/imagesel"
	"github.com/conpaas/cps/images/catalogue"
)

// MaxSkew is the clock difference EC2 request signing tolerates.
const MaxSkew = 5 * time.Minute

// Finding is one line of the report.
type Finding struct {
	Check string
	OK    bool
	Msg   string // what was found
	Fix   string // what to do (problems only)
}

func (f Finding) String() string {
	if f.OK {
		return fmt.Sprintf("ok      %-22s %s", f.Check, f.Msg)
	}
	return fmt.Sprintf("PROBLEM %-22s %s; fix: %s", f.Check, f.Msg, f.Fix)
}

// Options tune the run.
type Options struct {
	// FixSecurityGroups creates missing groups and opens missing ports.
	FixSecurityGroups bool
	// OpenCloud builds the cloud client (tests may wrap it).
	OpenCloud func(config.Cloud) (compute.Cloud, error)
	Now       func() time.Time
}

// Run performs every check; it never stops at the first problem so one run
// lists everything to fix.
func Run(ctx context.Context, cfg *config.Config, opt Options) []Finding {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	var out []Finding
	add := func(f Finding) { out = append(out, f) }

	var pool *tlsRoots
	ca, err := certs.Load(cfg.CertDir)
	if err != nil {
		fix := "run `cpsdirector certs --config " + cfg.Path + "`"
		if errors.Is(err, certs.ErrCADamaged) {
			// certs would refuse it too: the error says what to do.
			fix = "see above; `cpsdirector certs` will not replace a CA"
		}
		add(Finding{Check: "certificates", Msg: err.Error(), Fix: fix})
	} else {
		pool = &tlsRoots{ca}
		leaf := ca.Server.Leaf
		if err := certs.ServerMatches(leaf, cfg.Host); err != nil {
			add(Finding{Check: "server certificate", Msg: err.Error(), Fix: "run `cpsdirector certs` (re-issues it for the current DIRECTOR_URL) and restart cpsdirector serve"})
		} else if left := leaf.NotAfter.Sub(opt.Now()); left < 14*24*time.Hour {
			add(Finding{Check: "server certificate", Msg: fmt.Sprintf("expires %s", leaf.NotAfter.Format(time.RFC3339)), Fix: "run `cpsdirector certs` to renew it"})
		} else {
			add(Finding{Check: "server certificate", OK: true, Msg: fmt.Sprintf("commonName and SAN are %s, valid until %s", cfg.Host, leaf.NotAfter.Format("2006-01-02"))})
		}
	}

	d, err := db.Open(ctx, cfg.Database)
	if err == nil {
		err = d.Ping(ctx)
		d.Close()
	}
	if err != nil {
		what, fix := databaseProblem(err)
		add(Finding{Check: "database", Msg: fmt.Sprintf("%s %s: %v", cfg.Database.Redacted(), what, err), Fix: fix})
	} else {
		add(Finding{Check: "database", OK: true, Msg: cfg.Database.Redacted() + " is writable"})
	}
	for _, w := range cfg.Warnings {
		add(Finding{Check: "configuration", Msg: w, Fix: "remove or correct the setting (the director starts anyway)"})
	}

	var cat *catalogue.Catalogue
	if imagesel.NeedsCatalogue(cfg) {
		cat, err = catalogue.Load(cfg.CataloguePath)
		if err != nil {
			add(Finding{Check: "catalogue", Msg: err.Error(), Fix: "fix or regenerate the catalogue with cpsimage, or set CATALOGUE in [conpaas]"})
		}
	}
	for _, cl := range cfg.Clouds {
		out = append(out, checkCloud(ctx, cfg, cl, cat, opt)...)
	}

	if st, err := os.Stat(cfg.TarballPath); err != nil || !st.Mode().IsRegular() {
		add(Finding{Check: "ConPaaS.tar.gz", Msg: fmt.Sprintf("%s is missing", cfg.TarballPath), Fix: "install the ConPaaS tarball there (or set CONPAAS_TARBALL): managers download it at boot"})
	} else if pool != nil {
		add(checkDownload(ctx, cfg, pool.ca))
	}
	return out
}

type tlsRoots struct{ ca *certs.Authority }

func checkCloud(ctx context.Context, cfg *config.Config, cl config.Cloud, cat *catalogue.Catalogue, opt Options) []Finding {
	var out []Finding
	name := "cloud " + cl.Name
	section := fmt.Sprintf("[%s] (line %d of %s)", sectionName(cl), cl.Line, cfg.Path)
	ch, rerr := imagesel.Resolve(cat, cl)
	if rerr != nil {
		out = append(out, Finding{Check: name + " image", Msg: rerr.Error(), Fix: "register the image for this cloud with `cpsimage register`, or fix IMAGE/REGION/CLOUD_NAME/ARCH in " + section})
	}
	c, err := opt.OpenCloud(cl)
	if err != nil {
		return append(out, Finding{Check: name, Msg: err.Error(), Fix: "fix " + section})
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	date, err := c.Probe(pctx)
	cancel()
	// Clock first: skew is the usual cause of rejected EC2 signatures.
	if !date.IsZero() {
		skew := opt.Now().Sub(date)
		if skew > MaxSkew || skew < -MaxSkew {
			out = append(out, Finding{Check: name + " clock", Msg: fmt.Sprintf("local clock is %s off the endpoint's Date header (%s)", skew.Round(time.Second), date.Format(time.RFC1123)),
				Fix: "set the time, e.g. `ntpdate 0.us.pool.ntp.org` (signed requests fail beyond 5 minutes)"})
		} else {
			out = append(out, Finding{Check: name + " clock", OK: true, Msg: fmt.Sprintf("within %s of the endpoint", skew.Abs().Round(time.Second))})
		}
	}
	if err != nil {
		if errors.Is(err, compute.ErrAuth) {
			return append(out, Finding{Check: name + " credentials", Msg: err.Error(), Fix: "fix USER/PASSWORD" + map[bool]string{true: "/PROJECT/DOMAIN", false: ""}[cl.Driver == config.DriverOpenStack] + " in " + section})
		}
		return append(out, Finding{Check: name + " reachable", Msg: err.Error(), Fix: "check the network path and " + endpointKey(cl) + " in " + section})
	}
	out = append(out, Finding{Check: name + " credentials", OK: true, Msg: "accepted by " + cl.Driver})

	if rerr == nil {
		ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := c.ImageExists(ictx, ch.ImageID)
		cancel()
		switch {
		case errors.Is(err, compute.ErrNotFound):
			out = append(out, Finding{Check: name + " image", Msg: fmt.Sprintf("image %s (%s) does not exist in the cloud", ch.ImageID, ch.Source),
				Fix: "re-register the image (`cpsimage register`) or correct the catalogue/IMAGE_ID"})
		case err != nil:
			out = append(out, Finding{Check: name + " image", Msg: err.Error(), Fix: "make image " + ch.ImageID + " available to this account"})
		default:
			out = append(out, Finding{Check: name + " image", OK: true, Msg: fmt.Sprintf("%s (%s) is available", ch.ImageID, ch.Source)})
		}
	}

	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if opt.FixSecurityGroups {
		if err := c.EnsureSecurityGroup(sctx, cl.SecurityGroup, compute.Ports); err != nil {
			out = append(out, Finding{Check: name + " security group", Msg: "opening ports: " + err.Error(), Fix: "open the ports by hand (see the seeds' Security Group section)"})
			return out
		}
	}
	rules, err := c.SecurityGroupRules(sctx, cl.SecurityGroup)
	switch {
	case errors.Is(err, compute.ErrNotFound):
		out = append(out, Finding{Check: name + " security group", Msg: fmt.Sprintf("security group %q does not exist", cl.SecurityGroup),
			Fix: "run `cpsdirector check --fix-security-groups` or create it and open TCP " + portList(compute.Ports)})
	case err != nil:
		out = append(out, Finding{Check: name + " security group", Msg: err.Error(), Fix: "check the account may describe security groups"})
	default:
		if miss := compute.MissingPorts(rules, compute.Ports); len(miss) > 0 {
			out = append(out, Finding{Check: name + " security group", Msg: fmt.Sprintf("%q does not open TCP %s", cl.SecurityGroup, portList(miss)),
				Fix: "run `cpsdirector check --fix-security-groups` or open those ports"})
		} else {
			out = append(out, Finding{Check: name + " security group", OK: true, Msg: fmt.Sprintf("%q opens every ConPaaS port", cl.SecurityGroup)})
		}
	}
	return out
}

func sectionName(cl config.Cloud) string { return cl.Name }

func endpointKey(cl config.Cloud) string {
	if cl.Driver == config.DriverOpenStack {
		return "AUTH_URL"
	}
	return "REGION/ENDPOINT"
}

func portList(p []int) string {
	s := make([]string, len(p))
	for i, v := range p {
		s[i] = fmt.Sprint(v)
	}
	return strings.Join(s, ", ")
}

// checkDownload fetches ConPaaS.tar.gz from DIRECTOR_URL verifying the
// server with the director's CA, exactly as a manager VM does.
func checkDownload(ctx context.Context, cfg *config.Config, ca *certs.Authority) Finding {
	u := cfg.DirectorURL.String() + "/download/ConPaaS.tar.gz"
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := hc.Do(req)
	if err != nil {
		return Finding{Check: "ConPaaS.tar.gz", Msg: fmt.Sprintf("cannot download %s with the director's CA: %v", u, err),
			Fix: "start `cpsdirector serve`, make DIRECTOR_URL reachable from here and the VMs (port, firewall), and keep its host equal to the certificate's"}
	}
	defer resp.Body.Close()
	n, _ := io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return Finding{Check: "ConPaaS.tar.gz", Msg: fmt.Sprintf("%s answered %s", u, resp.Status), Fix: "install ConPaaS.tar.gz at CONPAAS_TARBALL and check DIRECTOR_URL points at this director"}
	}
	return Finding{Check: "ConPaaS.tar.gz", OK: true, Msg: fmt.Sprintf("downloaded %d bytes from %s", n, u)}
}

// databaseProblem says what a database error means and what to do. A file
// that is not an SQLite database (or a damaged one) was reported as "not
// writable" with advice about permissions and free space, which cannot
// help; a locked one needs only a retry.
func databaseProblem(err error) (what, fix string) {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "file is not a database") || strings.Contains(msg, "database disk image is malformed"):
		return "is not a usable SQLite database", "restore director.db from a backup (or move it away: the next start makes an empty one, without the users and applications), or correct DATABASE_URI in [director]"
	case strings.Contains(msg, "database is locked"):
		return "is locked by another process", "retry when the other process (a sqlite3 shell, another cpsdirector command) has finished"
	}
	return "is not writable", "check DATABASE_URI in [director], the server or the directory's permissions and free space (run as the director's user)"
}
