package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/conpaas/cps/cmd/cpsdirector/internal/api"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/client"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/config"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/db"
	"github.com/conpaas/cps/internal/cli"
	"golang.org/x/term"
)

func init() {
	commands.Add(&cli.Command{Name: "client", Summary: "the cps-tools command line: client OBJECT VERB ... (user, application, service, cloud, director)", Run: func(ctx context.Context, args []string) error {
		// Errors read as cps-tools printed them ("ERROR: ...").
		err := runClient(ctx, args)
		if err == nil || cli.Code(err) == cli.ExitUsage {
			return err
		}
		return cli.WithCode(cli.Code(err), fmt.Errorf("ERROR: %w", err))
	}})
}

const clientUsage = `[--director_url URL] [--username NAME] [--password PW] [--conf_file FILE] [-d] OBJECT VERB [args]

cps-tools' grammar; the configuration is ~/.conpaas/cps-tools.conf (and
/etc/cps-tools/cps-tools.conf), section [cps-tools]: director_url, username,
password, debug. Certificates are kept in ~/.conpaas.

  user create_free USERNAME [--email E] [--fname F] [--lname L] [--affiliation A] [--password P] [--credit N]
  user create USERNAME [same options] [--config DIRECTOR_CFG]     (on the director's machine)
  user get_certificate [--trust-ca SHA256]
  user get_config | get_credit
  user add_credit USERNAME CREDIT | list [--credit] [--config DIRECTOR_CFG]   (on the director's machine)
  cloud list | list_resources
  application create NAME | list | rename APP NEW | delete APP
  application start APP [-c CLOUD] | stop APP | manifest FILE [-c CLOUD] | get_info APP | get_log APP
  service get_types | add TYPE APP | list [-a APP] | rename APP SERVICE NEW | remove APP SERVICE
  service start APP SERVICE [-c CLOUD] | stop APP SERVICE | get_state APP SERVICE | get_log APP SERVICE
  service list_nodes APP SERVICE | add_nodes APP SERVICE [--ROLE N] [-c CLOUD] | remove_nodes APP SERVICE [--ROLE N]
  php|java|mysql|xtreemfs|helloworld|generic VERB ...   (service verbs for that type)
  director version

APP and SERVICE are names or ids.`

// clientCmd is one run of the client.
type clientCmd struct {
	ctx  context.Context
	conf *client.Conf
	c    *client.Client
	out  io.Writer
}

func runClient(ctx context.Context, args []string) error {
	// Global options come before OBJECT, as in cps-tools.
	var dirURL, user, pass, confFile string
	debug := false
	i := 0
	for ; i < len(args) && strings.HasPrefix(args[i], "-"); i++ {
		a := args[i]
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name == "d" || name == "debug" {
			debug = true
			continue
		}
		if name == "h" || name == "help" {
			fmt.Fprintln(cli.Stdout, "usage: cpsdirector client "+clientUsage)
			return nil
		}
		if !hasVal {
			if i+1 >= len(args) {
				return cli.Usagef("%s needs a value", a)
			}
			i++
			val = args[i]
		}
		switch name {
		case "director_url":
			dirURL = val
		case "username":
			user = val
		case "password":
			pass = val
		case "conf_file", "conf":
			confFile = val
		default:
			return cli.Usagef("unknown option %s (usage: cpsdirector client %s)", a, strings.SplitN(clientUsage, "\n", 2)[0])
		}
	}
	rest := args[i:]
	if len(rest) < 2 {
		return cli.Usagef("usage: cpsdirector client %s", clientUsage)
	}
	conf, err := client.LoadConf(confFile)
	if err != nil {
		return cli.WithCode(cli.ExitUsage, err)
	}
	if dirURL != "" {
		conf.DirectorURL = dirURL
	}
	conf.DirectorURL = client.NormalizeURL(conf.DirectorURL)
	if user != "" {
		conf.Username = user
	}
	if pass != "" {
		conf.Password = pass
	}
	conf.Debug = conf.Debug || debug
	k := &clientCmd{ctx: ctx, conf: conf, out: cli.Stdout}
	obj, verb, vargs := rest[0], rest[1], rest[2:]
	// Commands that work on the director's machine without the API.
	if obj == "user" && (verb == "create" || verb == "add_credit" || verb == "list") {
		return k.local(verb, vargs)
	}
	k.c, err = client.New(conf)
	if err != nil {
		return cli.WithCode(cli.ExitUsage, err)
	}
	if conf.Debug {
		k.c.Log = os.Stderr
	}
	switch obj {
	case "user":
		return k.user(verb, vargs)
	case "cloud":
		return k.cloud(verb, vargs)
	case "application":
		return k.application(verb, vargs)
	case "service":
		return k.service("", verb, vargs)
	case "director":
		if verb != "version" {
			return cli.Usagef("director verbs: version")
		}
		v, raw, err := k.c.Director(ctx, false, "version", nil, false)
		if err != nil {
			return err
		}
		if v == nil {
			v = string(raw)
		}
		fmt.Fprintf(k.out, "ConPaaS director version %v\n", v)
		return nil
	}
	for _, t := range api.ServiceTypes {
		if obj == t {
			return k.service(t, verb, vargs)
		}
	}
	return cli.Usagef("unknown object %q: user, cloud, application, service, director or a service type", obj)
}

// opts splits arguments into positionals and --name value options;
// flags lists options that take no value.
func opts(args []string, flags ...string) ([]string, map[string]string, error) {
	o := map[string]string{}
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		name, val, has := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name == "c" {
			name = "cloud"
		}
		if name == "a" {
			name = "application"
		}
		isFlag := false
		for _, f := range flags {
			isFlag = isFlag || f == name
		}
		if isFlag {
			o[name] = "true"
			continue
		}
		if !has {
			if i+1 >= len(args) {
				return nil, nil, cli.Usagef("%s needs a value", a)
			}
			i++
			val = args[i]
		}
		o[name] = val
	}
	return pos, o, nil
}

func need(pos []string, n int, usage string) error {
	if len(pos) != n {
		return cli.Usagef("usage: cpsdirector client %s", usage)
	}
	return nil
}

func (k *clientCmd) post(method string, form url.Values) (any, []byte, error) {
	return k.c.Director(k.ctx, true, method, form, true)
}

func (k *clientCmd) get(method string) (any, []byte, error) {
	return k.c.Director(k.ctx, false, method, nil, true)
}

func (k *clientCmd) user(verb string, args []string) error {
	switch verb {
	case "create_free":
		pos, o, err := opts(args)
		if err != nil {
			return err
		}
		if err := need(pos, 1, "user create_free USERNAME [--email E] [--password P] [--credit N] ..."); err != nil {
			return err
		}
		form, err := newUserForm(pos[0], o)
		if err != nil {
			return err
		}
		if _, _, err := k.c.Director(k.ctx, true, "new_user", form, false); err != nil {
			return err
		}
		fmt.Fprintf(k.out, "User '%s' created successfully.\n", pos[0])
	case "get_certificate":
		_, o, err := opts(args)
		if err != nil {
			return err
		}
		caPEM, err := os.ReadFile(k.conf.Dir + "/ca_cert.pem")
		if errors.Is(err, os.ErrNotExist) {
			caPEM, err = client.FetchCA(k.ctx, k.conf, o["trust-ca"], confirmFingerprint)
		}
		if err != nil {
			return err
		}
		if k.conf.Password == "" {
			if k.conf.Password, err = askPassword("Enter your password: "); err != nil {
				return err
			}
		}
		if err := client.GetCertificate(k.ctx, k.conf, caPEM); err != nil {
			return err
		}
		fmt.Fprintln(k.out, "User certificates installed successfully.")
	case "get_config":
		v, _, err := k.get("user_config")
		if err != nil {
			return err
		}
		m, _ := v.(map[string]any)
		for _, key := range sortedKeys(m) {
			fmt.Fprintf(k.out, "%s: %s\n", key, pyStr(m[key]))
		}
	case "get_credit":
		v, _, err := k.get("user_credit")
		if err != nil {
			return err
		}
		fmt.Fprintln(k.out, pyStr(v))
	default:
		return cli.Usagef("user verbs: create, create_free, get_certificate, get_config, get_credit, add_credit, list")
	}
	return nil
}

// newUserForm is UserCmd._get_new_user_args: prompts for what is missing.
func newUserForm(name string, o map[string]string) (url.Values, error) {
	credit := int64(50)
	if c, ok := o["credit"]; ok {
		n, err := strconv.ParseInt(c, 10, 64)
		if err != nil {
			return nil, cli.Usagef("--credit %q is not an integer", c)
		}
		credit = n
	}
	if credit <= 0 {
		return nil, fmt.Errorf("Cannot create a user with %d credits.", credit)
	}
	email := o["email"]
	if email == "" {
		return nil, cli.Usagef("--email is required")
	}
	pw, ok := o["password"]
	if !ok {
		var err error
		if pw, err = askPassword("Password: "); err != nil {
			return nil, err
		}
		again, err := askPassword("Retype password: ")
		if err != nil {
			return nil, err
		}
		if pw != again {
			return nil, cli.Usagef("passwords do not match")
		}
	}
	return url.Values{"username": {name}, "fname": {o["fname"]}, "lname": {o["lname"]}, "email": {email},
		"affiliation": {o["affiliation"]}, "password": {pw}, "credit": {strconv.FormatInt(credit, 10)}}, nil
}

func askPassword(prompt string) (string, error) {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && line == "" {
			return "", cli.Usagef("no password: set password in cps-tools.conf, pass --password, or type it on a terminal")
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	fmt.Fprint(os.Stderr, prompt)
	b, err := term.ReadPassword(fd)
	fmt.Fprintln(os.Stderr)
	return string(b), err
}

func confirmFingerprint(fp string) bool {
	if !term.IsTerminal(int(os.Stdin.Fd())) {
		return false
	}
	fmt.Fprintf(os.Stderr, "Director CA SHA-256 fingerprint: %s\nTrust it? [y/N] ", fp)
	l, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	return strings.TrimSpace(strings.ToLower(l)) == "y"
}

// local runs the user verbs cps-tools ran against the director's own
// database ("on director's machine only").
func (k *clientCmd) local(verb string, args []string) error {
	var flags []string
	if verb == "list" {
		flags = []string{"credit"}
	}
	pos, o, err := opts(args, flags...)
	if err != nil {
		return err
	}
	path := o["config"]
	if path == "" {
		path = config.DefaultPath
	}
	cfg, err := loadConfig(path)
	if err != nil {
		return fmt.Errorf("Cannot find a ConPaaS director on this machine: %w", err)
	}
	switch verb {
	case "create":
		if err := need(pos, 1, "user create USERNAME [--email E] [--password P] [--credit N]"); err != nil {
			return err
		}
		form, err := newUserForm(pos[0], o)
		if err != nil {
			return err
		}
		a := []string{"--config", path, "--email", form.Get("email"), "--credit", form.Get("credit"), "--password-stdin", pos[0]}
		stdin = strings.NewReader(form.Get("password") + "\n")
		if err := runAddUser(k.ctx, a); err != nil {
			return err
		}
		fmt.Fprintf(k.out, "User '%s' created successfully.\n", pos[0])
		return nil
	case "add_credit":
		if err := need(pos, 2, "user add_credit USERNAME CREDIT"); err != nil {
			return err
		}
		n, err := strconv.ParseInt(pos[1], 10, 64)
		if err != nil {
			return cli.Usagef("credit %q is not an integer", pos[1])
		}
		return addCredit(k.ctx, cfg, pos[0], n)
	default: // list
		withCredit := o["credit"] == "true"
		d, err := db.Open(k.ctx, cfg.Database)
		if err != nil {
			return err
		}
		defer d.Close()
		users, err := d.Users(k.ctx)
		if err != nil {
			return err
		}
		for _, u := range users {
			if withCredit {
				fmt.Fprintf(k.out, "%s\t%d\n", u.Username, u.Credit)
			} else {
				fmt.Fprintln(k.out, u.Username)
			}
		}
		return nil
	}
}

func (k *clientCmd) clouds() ([]string, error) {
	v, _, err := k.c.Director(k.ctx, false, "available_clouds", nil, false)
	if err != nil {
		return nil, err
	}
	var l []string
	for _, x := range v.([]any) {
		l = append(l, fmt.Sprint(x))
	}
	return l, nil
}

func (k *clientCmd) checkCloud(name string) error {
	if name == "" {
		return nil
	}
	l, err := k.clouds()
	if err != nil {
		return err
	}
	for _, c := range l {
		if c == name {
			return nil
		}
	}
	return fmt.Errorf("Unknown cloud name '%s'", name)
}

func (k *clientCmd) cloud(verb string, args []string) error {
	switch verb {
	case "list":
		l, err := k.clouds()
		if err != nil {
			return err
		}
		for _, c := range l {
			fmt.Fprintln(k.out, c)
		}
	case "list_resources":
		_, raw, err := k.get("list_resources")
		if err != nil {
			return err
		}
		var rows []map[string]any
		json.Unmarshal(raw, &rows)
		if len(rows) == 0 {
			fmt.Fprintln(k.out, "No existing resources")
			return nil
		}
		fmt.Fprintln(k.out, prettytable([]string{"rid", "app_id", "vmid", "ip", "role", "cloud"}, rows))
	default:
		return cli.Usagef("cloud verbs: list, list_resources")
	}
	return nil
}

// app resolves a name or id (application.py check_application).
func (k *clientCmd) app(ref string) (client.App, error) {
	apps, err := k.c.Apps(k.ctx)
	if err != nil {
		return client.App{}, err
	}
	if len(apps) == 0 {
		return client.App{}, errors.New("No existing applications.")
	}
	if id, err := strconv.ParseInt(ref, 10, 64); err == nil {
		for _, a := range apps {
			if a.AID == id {
				return a, nil
			}
		}
		return client.App{}, fmt.Errorf("Unknown application id %d", id)
	}
	var found []client.App
	for _, a := range apps {
		if a.Name == ref {
			found = append(found, a)
		}
	}
	switch len(found) {
	case 0:
		return client.App{}, fmt.Errorf("Unknown application name '%s'", ref)
	case 1:
		return found[0], nil
	}
	return client.App{}, fmt.Errorf("%d applications match the application name '%s'", len(found), ref)
}

// waitApp polls /listapp until the application is in one of states.
func (k *clientCmd) waitApp(aid int64, states ...string) (string, error) {
	for {
		apps, err := k.c.Apps(k.ctx)
		if err != nil {
			return "", err
		}
		for _, a := range apps {
			if a.AID == aid {
				for _, s := range states {
					if a.Status == s {
						return s, nil
					}
				}
			}
		}
		select {
		case <-k.ctx.Done():
			return "", k.ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

func (k *clientCmd) application(verb string, args []string) error {
	pos, o, err := opts(args)
	if err != nil {
		return err
	}
	switch verb {
	case "create":
		if err := need(pos, 1, "application create NAME"); err != nil {
			return err
		}
		v, _, err := k.post("createapp", url.Values{"name": {pos[0]}})
		if err != nil {
			return err
		}
		m := v.(map[string]any)
		fmt.Fprintf(k.out, "Application '%s' created with id %s.\n", pyStr(m["name"]), pyStr(m["aid"]))
	case "list":
		_, raw, err := k.get("listapp")
		if err != nil {
			return err
		}
		var rows []map[string]any
		json.Unmarshal(raw, &rows)
		if len(rows) == 0 {
			fmt.Fprintln(k.out, "No existing applications.")
			return nil
		}
		for _, r := range rows {
			if r["cloud"] == "iaas" {
				r["cloud"] = "default"
			}
		}
		fmt.Fprintln(k.out, prettytable([]string{"aid", "name", "manager", "cloud", "status"}, rows))
	case "rename":
		if err := need(pos, 2, "application rename APP NEW_NAME"); err != nil {
			return err
		}
		a, err := k.app(pos[0])
		if err != nil {
			return err
		}
		if _, _, err := k.post(fmt.Sprintf("renameapp/%d", a.AID), url.Values{"name": {pos[1]}}); err != nil {
			return err
		}
		fmt.Fprintf(k.out, "Application with id %d has been renamed from '%s' to '%s'.\n", a.AID, a.Name, pos[1])
	case "delete", "stop":
		if err := need(pos, 1, "application "+verb+" APP"); err != nil {
			return err
		}
		a, err := k.app(pos[0])
		if err != nil {
			return err
		}
		route := "deleteapp"
		if verb == "stop" {
			route = "stopapp"
		}
		if _, _, err := k.post(fmt.Sprintf("%s/%d", route, a.AID), nil); err != nil {
			return err
		}
		if verb == "stop" {
			fmt.Fprintf(k.out, "Application '%s' with id %d was stopped.\n", a.Name, a.AID)
		} else {
			fmt.Fprintf(k.out, "Application '%s' with id %d has been deleted.\n", a.Name, a.AID)
		}
	case "start":
		if err := need(pos, 1, "application start APP [-c CLOUD]"); err != nil {
			return err
		}
		a, err := k.app(pos[0])
		if err != nil {
			return err
		}
		route := fmt.Sprintf("startapp/%d", a.AID)
		if c := o["cloud"]; c != "" {
			if err := k.checkCloud(c); err != nil {
				return err
			}
			route += "/" + c
		}
		if _, _, err := k.post(route, nil); err != nil {
			return err
		}
		fmt.Fprintf(k.out, "Application '%s' with id %d is starting... ", a.Name, a.AID)
		return k.report(k.waitApp(a.AID, db.AppRunning, db.AppError))
	case "manifest":
		if err := need(pos, 1, "application manifest FILE [-c CLOUD]"); err != nil {
			return err
		}
		b, err := os.ReadFile(pos[0])
		if err != nil {
			return errors.New("The specified path does not contain a file")
		}
		var m struct{ Services []map[string]any }
		if json.Unmarshal(b, &m) != nil {
			return errors.New("The uploaded manifest is not valid json")
		}
		for _, s := range m.Services {
			if s["Type"] == nil {
				return errors.New(`The "Type" field is mandatory`)
			}
		}
		cloud := o["cloud"]
		if cloud == "" {
			cloud = "default"
		}
		if err := k.checkCloud(cloud); err != nil {
			return err
		}
		v, _, err := k.post("upload_manifest", url.Values{"manifest": {string(b)}, "cloud": {cloud}, "thread": {"True"}})
		if err != nil {
			return err
		}
		aid, _ := v.(map[string]any)["aid"].(float64)
		fmt.Fprintf(k.out, "Application %d is being created based on the specified manifest... ", int64(aid))
		return k.report(k.waitApp(int64(aid), db.AppRunning, db.AppError))
	case "get_info", "get_log":
		if err := need(pos, 1, "application "+verb+" APP"); err != nil {
			return err
		}
		a, err := k.app(pos[0])
		if err != nil {
			return err
		}
		method := map[string]string{"get_info": "get_app_info", "get_log": "get_manager_log"}[verb]
		res, err := k.c.Manager(k.ctx, a, 0, method, false, nil)
		if err != nil {
			return err
		}
		var m map[string]any
		json.Unmarshal(res, &m)
		if verb == "get_log" {
			fmt.Fprintln(k.out, pyStr(m["log"]))
			return nil
		}
		fmt.Fprintf(k.out, "Application name: %s\nApplication id: %d\n", a.Name, a.AID)
		for _, key := range sortedKeys(m) {
			fmt.Fprintf(k.out, "%s: %s\n", key, pyStr(m[key]))
		}
	default:
		return cli.Usagef("application verbs: create, list, rename, delete, start, stop, manifest, get_info, get_log")
	}
	return nil
}

func (k *clientCmd) report(state string, err error) error {
	if err != nil {
		fmt.Fprintln(k.out)
		return err
	}
	if state == db.AppRunning {
		fmt.Fprintln(k.out, "done.")
		return nil
	}
	fmt.Fprintln(k.out, "FAILED!")
	return cli.WithCode(cli.ExitFailure, errors.New("the application did not start"))
}

type serviceRow struct {
	AID, SID int64
	Type     string
	Name     string
}

func (k *clientCmd) services(aid int64, typ string) ([]serviceRow, error) {
	_, raw, err := k.get("list")
	if err != nil {
		return nil, err
	}
	var l []struct {
		Service struct {
			SID           int64   `json:"sid"`
			ApplicationID int64   `json:"application_id"`
			Type          *string `json:"type"`
			Name          *string `json:"name"`
		} `json:"service"`
	}
	if err := json.Unmarshal(raw, &l); err != nil {
		return nil, err
	}
	var out []serviceRow
	for _, s := range l {
		r := serviceRow{AID: s.Service.ApplicationID, SID: s.Service.SID}
		if s.Service.Type != nil {
			r.Type = *s.Service.Type
		}
		if s.Service.Name != nil {
			r.Name = *s.Service.Name
		}
		if (aid == 0 || r.AID == aid) && (typ == "" || r.Type == typ) {
			out = append(out, r)
		}
	}
	return out, nil
}

// checkService is ServiceCmd.check_service.
func (k *clientCmd) checkService(appRef, svcRef, typ string) (client.App, int64, error) {
	a, err := k.app(appRef)
	if err != nil {
		return a, 0, err
	}
	l, err := k.services(a.AID, typ)
	if err != nil {
		return a, 0, err
	}
	suffix := ""
	if typ != "" {
		suffix = " of type " + typ + "."
	}
	if id, err := strconv.ParseInt(svcRef, 10, 64); err == nil {
		for _, s := range l {
			if s.SID == id {
				return a, id, nil
			}
		}
		return a, 0, fmt.Errorf("Unknown service id %d in application %d%s", id, a.AID, suffix)
	}
	for _, s := range l {
		if s.Name == svcRef {
			return a, s.SID, nil
		}
	}
	return a, 0, fmt.Errorf("Unknown service name '%s' in application %d%s", svcRef, a.AID, suffix)
}

func (k *clientCmd) waitService(a client.App, sid int64, states ...string) (string, error) {
	for {
		res, err := k.c.Manager(k.ctx, a, sid, "get_service_info", false, nil)
		if err == nil {
			var info struct{ State string }
			json.Unmarshal(res, &info)
			for _, s := range states {
				if info.State == s {
					return s, nil
				}
			}
		}
		select {
		case <-k.ctx.Done():
			return "", k.ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

func (k *clientCmd) service(typ, verb string, args []string) error {
	pos, o, err := opts(args)
	if err != nil {
		return err
	}
	switch verb {
	case "get_types":
		if typ != "" {
			fmt.Fprintln(k.out, typ)
			return nil
		}
		v, _, err := k.c.Director(k.ctx, false, "available_services", nil, false)
		if err != nil {
			return err
		}
		for _, t := range v.([]any) {
			fmt.Fprintln(k.out, t)
		}
	case "add":
		if typ != "" {
			pos = append([]string{typ}, pos...)
		}
		if err := need(pos, 2, "service add TYPE APP"); err != nil {
			return err
		}
		a, err := k.app(pos[1])
		if err != nil {
			return err
		}
		v, _, err := k.post("add/"+pos[0], url.Values{"appid": {strconv.FormatInt(a.AID, 10)}})
		if err != nil {
			return err
		}
		sid := v.(map[string]any)["service"].(map[string]any)["sid"]
		fmt.Fprintf(k.out, "Service %s successfully added to application %d with id %s.\n", pos[0], a.AID, pyStr(sid))
	case "list":
		var aid int64
		if ref := o["application"]; ref != "" {
			a, err := k.app(ref)
			if err != nil {
				return err
			}
			aid = a.AID
		}
		l, err := k.services(aid, typ)
		if err != nil {
			return err
		}
		if len(l) == 0 {
			fmt.Fprintln(k.out, "No existing services.")
			return nil
		}
		sort.Slice(l, func(i, j int) bool { return l[i].AID < l[j].AID || l[i].AID == l[j].AID && l[i].SID < l[j].SID })
		var rows []map[string]any
		for _, s := range l {
			rows = append(rows, map[string]any{"aid": s.AID, "sid": s.SID, "type": s.Type, "name": s.Name})
		}
		fmt.Fprintln(k.out, prettytable([]string{"aid", "sid", "type", "name"}, rows))
	case "rename", "remove":
		n := map[string]int{"rename": 3, "remove": 2}[verb]
		if err := need(pos, n, "service "+verb+" APP SERVICE"+map[string]string{"rename": " NEW_NAME"}[verb]); err != nil {
			return err
		}
		a, sid, err := k.checkService(pos[0], pos[1], typ)
		if err != nil {
			return err
		}
		form := url.Values{"app_id": {strconv.FormatInt(a.AID, 10)}, "service_id": {strconv.FormatInt(sid, 10)}}
		if verb == "rename" {
			form.Set("name", pos[2])
		}
		if _, _, err := k.post(verb, form); err != nil {
			return err
		}
		if verb == "rename" {
			fmt.Fprintf(k.out, "Service %d of application %d has been renamed to '%s'.\n", sid, a.AID, pos[2])
		} else {
			fmt.Fprintf(k.out, "Service %d of application %d has been successfully removed.\n", sid, a.AID)
		}
	case "start", "stop":
		if err := need(pos, 2, "service "+verb+" APP SERVICE"); err != nil {
			return err
		}
		a, sid, err := k.checkService(pos[0], pos[1], typ)
		if err != nil {
			return err
		}
		params := map[string]any{"service_id": sid}
		want := []string{"STOPPED", "ERROR"}
		if verb == "start" {
			cloud := o["cloud"]
			if cloud == "" {
				cloud = "default"
			}
			if err := k.checkCloud(cloud); err != nil {
				return err
			}
			params["cloud"] = cloud
			want = []string{"RUNNING", "ERROR"}
		}
		if _, err := k.c.Manager(k.ctx, a, 0, verb+"_service", true, params); err != nil {
			return err
		}
		fmt.Fprintf(k.out, "Service %d of application %d is %s... ", sid, a.AID, map[string]string{"start": "starting", "stop": "stopping"}[verb])
		st, err := k.waitService(a, sid, want...)
		if err != nil {
			return err
		}
		if st == "ERROR" {
			fmt.Fprintln(k.out, "FAILED!")
			return cli.WithCode(cli.ExitFailure, errors.New("the service is in state ERROR"))
		}
		fmt.Fprintln(k.out, "done.")
	case "get_state", "get_log":
		if err := need(pos, 2, "service "+verb+" APP SERVICE"); err != nil {
			return err
		}
		a, sid, err := k.checkService(pos[0], pos[1], typ)
		if err != nil {
			return err
		}
		method := map[string]string{"get_state": "get_service_info", "get_log": "get_manager_log"}[verb]
		res, err := k.c.Manager(k.ctx, a, sid, method, false, nil)
		if err != nil {
			return err
		}
		var m map[string]any
		json.Unmarshal(res, &m)
		if verb == "get_log" {
			fmt.Fprintln(k.out, pyStr(m["log"]))
			return nil
		}
		for _, key := range sortedKeys(m) {
			fmt.Fprintf(k.out, "%s: %s\n", key, pyStr(m[key]))
		}
	case "list_nodes":
		if err := need(pos, 2, "service list_nodes APP SERVICE"); err != nil {
			return err
		}
		a, sid, err := k.checkService(pos[0], pos[1], typ)
		if err != nil {
			return err
		}
		res, err := k.c.Manager(k.ctx, a, sid, "list_nodes", false, nil)
		if err != nil {
			return err
		}
		var roles map[string][]any
		json.Unmarshal(res, &roles)
		var rows []map[string]any
		for _, role := range sortedKeys(roles) {
			for _, n := range roles[role] {
				rows = append(rows, map[string]any{"aid": a.AID, "sid": sid, "role": role, "agent_id": pyStr(n)})
			}
		}
		if len(rows) == 0 {
			fmt.Fprintln(k.out, "No existing nodes.")
			return nil
		}
		fmt.Fprintln(k.out, prettytable([]string{"aid", "sid", "role", "agent_id"}, rows))
	case "add_nodes", "remove_nodes":
		if err := need(pos, 2, "service "+verb+" APP SERVICE [--ROLE COUNT] [-c CLOUD]"); err != nil {
			return err
		}
		a, sid, err := k.checkService(pos[0], pos[1], typ)
		if err != nil {
			return err
		}
		nodes := map[string]any{}
		total := int64(0)
		for key, v := range o {
			if key == "cloud" {
				continue
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return fmt.Errorf("Invalid number of nodes %s.", v)
			}
			nodes[key] = n
			total += n
		}
		if total == 0 {
			nodes["count"], total = int64(1), 1
		}
		params := map[string]any{"nodes": nodes, "service_id": sid}
		if verb == "add_nodes" {
			cloud := o["cloud"]
			if cloud == "" {
				cloud = "default"
			}
			if err := k.checkCloud(cloud); err != nil {
				return err
			}
			params["cloud"] = cloud
		}
		if _, err := k.c.Manager(k.ctx, a, 0, verb, true, params); err != nil {
			return err
		}
		what := map[string]string{"add_nodes": "Starting %d new nodes", "remove_nodes": "Removing %d nodes"}[verb]
		fmt.Fprintf(k.out, what+" for service %d of application %d... ", total, sid, a.AID)
		st, err := k.waitService(a, sid, "RUNNING", "ERROR")
		if err != nil {
			return err
		}
		if st == "ERROR" {
			fmt.Fprintln(k.out, "FAILED!")
			return cli.WithCode(cli.ExitFailure, errors.New("the service is in state ERROR"))
		}
		fmt.Fprintln(k.out, "done.")
	default:
		return cli.Usagef("service verbs: get_types, add, list, rename, remove, start, stop, get_state, get_log, list_nodes, add_nodes, remove_nodes")
	}
	return nil
}

// pyStr prints a JSON value as Python's print would.
func pyStr(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case bool:
		if x {
			return "True"
		}
		return "False"
	case float64:
		if x == float64(int64(x)) {
			return strconv.FormatInt(int64(x), 10)
		}
		return strconv.FormatFloat(x, 'g', -1, 64)
	case string:
		return x
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func sortedKeys[V any](m map[string]V) []string {
	var l []string
	for k := range m {
		l = append(l, k)
	}
	sort.Strings(l)
	return l
}

// prettytable is cps-tools' BaseClient.prettytable: columns as wide as
// their widest value, a dashed line under the header.
func prettytable(order []string, rows []map[string]any) string {
	w := map[string]int{}
	for _, f := range order {
		w[f] = len(f)
		for _, r := range rows {
			if n := len(pyStr(r[f])); n > w[f] {
				w[f] = n
			}
		}
	}
	var b strings.Builder
	// Python's format pads strings on the right, numbers on the left.
	line := func(vals []string, num []bool) {
		for i, f := range order {
			if i > 0 {
				b.WriteByte(' ')
			}
			if num != nil && num[i] {
				fmt.Fprintf(&b, "%*s", w[f], vals[i])
			} else {
				fmt.Fprintf(&b, "%-*s", w[f], vals[i])
			}
		}
	}
	line(order, nil)
	total := len(order) - 1
	for _, f := range order {
		total += w[f]
	}
	b.WriteString("\n" + strings.Repeat("-", total))
	for _, r := range rows {
		b.WriteByte('\n')
		vals := make([]string, len(order))
		num := make([]bool, len(order))
		for i, f := range order {
			vals[i] = pyStr(r[f])
			switch r[f].(type) {
			case float64, int64, int:
				num[i] = true
			}
		}
		line(vals, num)
	}
	return b.String()
}
