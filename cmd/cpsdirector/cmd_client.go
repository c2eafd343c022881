package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/conpaas/cps/cmd/cpsdirector/internal/client"
	"github.com/conpaas/cps/internal/cli"
	"golang.org/x/term"
)

func init() {
	commands.Add(&cli.Command{Name: "client", Summary: "command-line client like cps-tools: client OBJECT VERB (user, cloud, image, application, service)", Run: runClient})
}

const clientUsage = `[--conf FILE] OBJECT VERB [args]

  user get_certificate [--password-stdin] [--trust-ca SHA256]
  user whoami
  cloud list
  image list
  application create NAME | list | delete APP
  service start APP TYPE [--cloud NAME] | list [APP] | status SERVICE | stop SERVICE

APP is an application id or name. The configuration (default
~/.conpaas/cps-tools.conf) has a [conpaas] section with director_url and
username; certificates are kept next to it.`

func runClient(ctx context.Context, args []string) error {
	fs := cli.NewFlagSet("cpsdirector", "client", clientUsage)
	confPath := fs.String("conf", client.DefaultConfPath(), "cps-tools configuration `file`")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) < 2 {
		fs.Usage()
		return cli.Usagef("need OBJECT and VERB")
	}
	conf, err := client.LoadConf(*confPath)
	if err != nil {
		return cli.WithCode(cli.ExitUsage, err)
	}
	obj, verb, vargs := rest[0], rest[1], rest[2:]
	if obj == "user" && verb == "get_certificate" {
		return getCertificate(ctx, conf, vargs)
	}
	c, err := client.New(conf)
	if err != nil {
		return err
	}
	out := cli.Stdout
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	nargs := func(n int, usage string) error {
		if len(vargs) != n {
			return cli.Usagef("usage: client %s %s %s", obj, verb, usage)
		}
		return nil
	}
	switch obj + " " + verb {
	case "user whoami":
		var u struct {
			ID       int64  `json:"id"`
			Username string `json:"username"`
			Created  string `json:"created"`
		}
		if err := c.Do(ctx, "GET", "/user", nil, &u); err != nil {
			return err
		}
		fmt.Fprintf(out, "%s (id %d, since %s)\n", u.Username, u.ID, u.Created)
	case "cloud list":
		var l []struct {
			Name, Driver, Region string
			InstanceType         string `json:"instance_type"`
			Default              bool
		}
		if err := c.Do(ctx, "GET", "/clouds", nil, &l); err != nil {
			return err
		}
		fmt.Fprintln(tw, "NAME\tDRIVER\tREGION\tTYPE\tDEFAULT")
		for _, x := range l {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\n", x.Name, x.Driver, dash(x.Region), x.InstanceType, x.Default)
		}
	case "image list":
		var l []struct {
			Cloud, Driver, Region, Source, Version, Arch string
			ImageID                                      string `json:"image_id"`
		}
		if err := c.Do(ctx, "GET", "/images", nil, &l); err != nil {
			return err
		}
		fmt.Fprintln(tw, "CLOUD\tDRIVER\tREGION\tARCH\tIMAGE\tSOURCE\tVERSION")
		for _, x := range l {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", x.Cloud, x.Driver, dash(x.Region), x.Arch, x.ImageID, x.Source, dash(x.Version))
		}
	case "application create":
		if err := nargs(1, "NAME"); err != nil {
			return err
		}
		var a appJSON
		if err := c.Do(ctx, "POST", "/applications", map[string]string{"name": vargs[0]}, &a); err != nil {
			return err
		}
		fmt.Fprintf(out, "application %d %q created\n", a.ID, a.Name)
	case "application list":
		l, err := listApps(ctx, c)
		if err != nil {
			return err
		}
		fmt.Fprintln(tw, "ID\tNAME\tCREATED")
		for _, a := range l {
			fmt.Fprintf(tw, "%d\t%s\t%s\n", a.ID, a.Name, a.Created)
		}
	case "application delete":
		if err := nargs(1, "APP"); err != nil {
			return err
		}
		id, err := appID(ctx, c, vargs[0])
		if err != nil {
			return err
		}
		if err := c.Do(ctx, "DELETE", fmt.Sprintf("/applications/%d", id), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(out, "application %d deleted\n", id)
	case "service start":
		sfs := flag.NewFlagSet("service start", flag.ContinueOnError)
		cloud := sfs.String("cloud", "", "cloud name (default: the [iaas] cloud)")
		if err := cli.Parse(sfs, reorder(vargs)); err != nil {
			return err
		}
		if sfs.NArg() != 2 {
			return cli.Usagef("usage: client service start [--cloud NAME] APP TYPE")
		}
		id, err := appID(ctx, c, sfs.Arg(0))
		if err != nil {
			return err
		}
		var s svcJSON
		if err := c.Do(ctx, "POST", fmt.Sprintf("/applications/%d/services", id), map[string]string{"type": sfs.Arg(1), "cloud": *cloud}, &s); err != nil {
			return err
		}
		fmt.Fprintf(out, "service %d (%s) %s on cloud %s: manager %s from image %s\n", s.ID, s.Type, s.State, s.Cloud, s.Manager.InstanceID, s.Manager.ImageID)
	case "service list":
		path := "/services"
		if len(vargs) == 1 {
			id, err := appID(ctx, c, vargs[0])
			if err != nil {
				return err
			}
			path = fmt.Sprintf("/applications/%d/services", id)
		} else if len(vargs) > 1 {
			return cli.Usagef("usage: client service list [APP]")
		}
		var l []svcJSON
		if err := c.Do(ctx, "GET", path, nil, &l); err != nil {
			return err
		}
		fmt.Fprintln(tw, "ID\tAPP\tTYPE\tCLOUD\tSTATE\tMANAGER")
		for _, s := range l {
			fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\n", s.ID, s.ApplicationID, s.Type, s.Cloud, s.State, s.managerID())
		}
	case "service status", "service stop":
		if err := nargs(1, "SERVICE"); err != nil {
			return err
		}
		id, err := strconv.ParseInt(vargs[0], 10, 64)
		if err != nil {
			return cli.Usagef("service id %q is not a number", vargs[0])
		}
		var s svcJSON
		if verb == "stop" {
			err = c.Do(ctx, "POST", fmt.Sprintf("/services/%d/stop", id), nil, &s)
		} else {
			err = c.Do(ctx, "GET", fmt.Sprintf("/services/%d", id), nil, &s)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "service %d (%s) in application %d on cloud %s: %s", s.ID, s.Type, s.ApplicationID, s.Cloud, s.State)
		if s.Error != "" {
			fmt.Fprintf(out, " (%s)", s.Error)
		}
		if s.Manager != nil {
			fmt.Fprintf(out, "; manager %s %s", s.Manager.InstanceID, s.Manager.State)
		}
		if s.VMState != "" {
			fmt.Fprintf(out, "; cloud says %s %s", s.VMState, s.VMAddress)
		}
		fmt.Fprintln(out)
	default:
		return cli.Usagef("unknown client command %q (see `cpsdirector client -h`)", obj+" "+verb)
	}
	return nil
}

// reorder moves flags before positional arguments so "start APP TYPE
// --cloud x" works like cps-tools' argparse.
func reorder(args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		if strings.HasPrefix(args[i], "-") {
			flags = append(flags, args[i])
			if !strings.Contains(args[i], "=") && i+1 < len(args) {
				flags = append(flags, args[i+1])
				i++
			}
			continue
		}
		pos = append(pos, args[i])
	}
	return append(flags, pos...)
}

type appJSON struct {
	ID      int64  `json:"id"`
	Name    string `json:"name"`
	Created string `json:"created"`
}

type svcJSON struct {
	ID            int64  `json:"id"`
	ApplicationID int64  `json:"application_id"`
	Type          string `json:"type"`
	Cloud         string `json:"cloud"`
	State         string `json:"state"`
	Error         string `json:"error"`
	VMState       string `json:"vm_state"`
	VMAddress     string `json:"vm_address"`
	Manager       *struct {
		InstanceID string `json:"instance_id"`
		ImageID    string `json:"image_id"`
		State      string `json:"state"`
	} `json:"manager"`
}

func (s svcJSON) managerID() string {
	if s.Manager == nil {
		return "-"
	}
	return s.Manager.InstanceID
}

func listApps(ctx context.Context, c *client.Client) ([]appJSON, error) {
	var l []appJSON
	err := c.Do(ctx, "GET", "/applications", nil, &l)
	return l, err
}

// appID accepts an id or a name.
func appID(ctx context.Context, c *client.Client, ref string) (int64, error) {
	if id, err := strconv.ParseInt(ref, 10, 64); err == nil {
		return id, nil
	}
	l, err := listApps(ctx, c)
	if err != nil {
		return 0, err
	}
	for _, a := range l {
		if a.Name == ref {
			return a.ID, nil
		}
	}
	return 0, cli.WithCode(cli.ExitFailure, fmt.Errorf("you have no application named %q", ref))
}

func getCertificate(ctx context.Context, conf *client.Conf, args []string) error {
	fs := flag.NewFlagSet("user get_certificate", flag.ContinueOnError)
	fromStdin := fs.Bool("password-stdin", false, "read the password from standard input")
	trust := fs.String("trust-ca", "", "expected SHA-256 `fingerprint` of the director's CA (printed by cpsdirector certs), needed on first contact")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	caPEM, err := os.ReadFile(conf.Dir + "/ca_cert.pem")
	if errors.Is(err, os.ErrNotExist) {
		confirm := func(fp string) bool {
			if !term.IsTerminal(int(os.Stdin.Fd())) || *fromStdin {
				return false
			}
			fmt.Fprintf(os.Stderr, "Director CA SHA-256 fingerprint: %s\nTrust it? [y/N] ", fp)
			l, _ := bufio.NewReader(os.Stdin).ReadString('\n')
			return strings.TrimSpace(strings.ToLower(l)) == "y"
		}
		caPEM, err = client.FetchCA(ctx, conf, *trust, confirm)
	}
	if err != nil {
		return err
	}
	pw := conf.Password
	if pw == "" || *fromStdin {
		if pw, err = readPassword(*fromStdin); err != nil {
			return err
		}
	}
	if err := client.GetCertificate(ctx, conf, pw, caPEM); err != nil {
		return err
	}
	fmt.Fprintf(cli.Stdout, "certificate for %s stored in %s\n", conf.Username, conf.Dir)
	return nil
}
