package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/conpaas/cps/cmd/cpsdirector/internal/certs"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/db/dbtest"
	"github.com/conpaas/cps/internal/testutil"
)

// The expected answers below are written from the original director's
// source (ConPaaS-team/conpaas, conpaas-director/cpsdirector/*.py): each
// names the function that produced it. "<int>", "<str>", "<iso>" (Python's
// datetime.isoformat()), "<date>" (str(datetime)) and "<any>" stand for the
// values that change from run to run; everything else must match,
// including which keys exist. Flask's jsonify answers (indented, sorted)
// are compared byte for byte where they hold nothing variable.

// match compares a JSON answer with a template.
func match(t *testing.T, what string, got []byte, want string) any {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: answer is not JSON: %v\n%s", what, err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("%s: bad template: %v", what, err)
	}
	if err := matchValue(g, w, "$"); err != nil {
		t.Fatalf("%s: %v\ngot:  %s\nwant: %s", what, err, got, want)
	}
	return g
}

var (
	isoRE  = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?$`)
	dateRE = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{6})?$`)
)

func matchValue(g, w any, path string) error {
	if ws, ok := w.(string); ok && strings.HasPrefix(ws, "<") && strings.HasSuffix(ws, ">") {
		switch ws {
		case "<any>":
			return nil
		case "<int>":
			if f, ok := g.(float64); ok && f == float64(int64(f)) {
				return nil
			}
		case "<str>":
			if s, ok := g.(string); ok && s != "" {
				return nil
			}
		case "<iso>":
			if s, ok := g.(string); ok && isoRE.MatchString(s) {
				return nil
			}
		case "<date>":
			if s, ok := g.(string); ok && dateRE.MatchString(s) {
				return nil
			}
		}
		return fmt.Errorf("%s = %#v, want %s", path, g, ws)
	}
	switch wv := w.(type) {
	case map[string]any:
		gv, ok := g.(map[string]any)
		if !ok {
			return fmt.Errorf("%s = %#v, want an object", path, g)
		}
		var gk, wk []string
		for k := range gv {
			gk = append(gk, k)
		}
		for k := range wv {
			wk = append(wk, k)
		}
		sort.Strings(gk)
		sort.Strings(wk)
		if !reflect.DeepEqual(gk, wk) {
			return fmt.Errorf("%s has keys %v, want %v", path, gk, wk)
		}
		for k := range wv {
			if err := matchValue(gv[k], wv[k], path+"."+k); err != nil {
				return err
			}
		}
		return nil
	case []any:
		gv, ok := g.([]any)
		if !ok || len(gv) != len(wv) {
			return fmt.Errorf("%s = %#v, want %d items", path, g, len(wv))
		}
		for i := range wv {
			if err := matchValue(gv[i], wv[i], fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		return nil
	}
	if !reflect.DeepEqual(g, w) {
		return fmt.Errorf("%s = %#v, want %#v", path, g, w)
	}
	return nil
}

// exact checks a whole answer: status, content type and bytes.
func exact(t *testing.T, what string, r resp, code int, ct, body string) {
	t.Helper()
	if r.code != code || r.ct != ct || string(r.body) != body {
		t.Fatalf("%s: %d %q %q\nwant %d %q %q", what, r.code, r.ct, r.body, code, ct, body)
	}
}

const (
	ctJSON = "application/json"         // Flask jsonify
	ctText = "text/html; charset=utf-8" // Flask make_response(str)
)

// jsonifyErr is Flask 0.10's jsonify({'error': msg}): indent 2.
func jsonifyErr(msg string) string { return "{\n  \"error\": \"" + msg + "\"\n}" }

func TestProtocolSQLite(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.start()
	lifecycle(t, e)
}

// lifecycle drives the whole protocol the way ConPaaS's own clients and
// managers do, checking every answer against the original's.
func lifecycle(t *testing.T, e *env) {
	anon := e.login("", "")

	// conpaas-client's first probe (BaseClient.credentials):
	// service.py available_services -> simplejson.dumps(valid_services).
	r := anon.call("GET", "/available_services", nil)
	exact(t, "available_services", r, 200, ctText, `["php", "java", "helloworld", "xtreemfs", "mysql", "generic"]`)
	// director.py version / support_external_idp / debug_level.
	exact(t, "version", anon.call("GET", "/version", nil), 200, ctText, "2.0.0-cps")
	exact(t, "support_external_idp", anon.call("GET", "/support_external_idp", nil), 200, ctText, "False")
	exact(t, "support_openid", anon.call("GET", "/support_openid", nil), 200, ctText, "False")
	exact(t, "debug_level", anon.call("GET", "/debug_level/js", nil), 200, ctText, "0")
	// Flask answered 405 for a method a route does not take, 404 for an
	// <int:...> that is not one.
	if r := anon.call("GET", "/createapp", nil); r.code != 405 {
		t.Fatalf("GET /createapp: %d", r.code)
	}
	if r := anon.call("DELETE", "/getcerts", nil); r.code != 405 {
		t.Fatalf("DELETE /getcerts: %d", r.code)
	}
	if r := anon.call("POST", "/startapp/x1", nil); r.code != 404 {
		t.Fatalf("POST /startapp/x1: %d", r.code)
	}
	// cloud.py available_clouds: 'default' plus OTHER_CLOUDS with a section.
	exact(t, "available_clouds", anon.call("GET", "/available_clouds", nil), 200, ctText, `["default", "aws"]`)

	// cps-tools "user create_free" (UserCmd.create_user): user.py new_user.
	newUser := url.Values{"username": {"alice"}, "fname": {"Alice"}, "lname": {"Liddell"}, "email": {"alice@example.org"},
		"affiliation": {"VU"}, "password": {"alice-password"}, "credit": {"20"}}
	r = anon.call("POST", "/new_user", newUser)
	// User.to_dict (minus the password hash the original also sent).
	match(t, "new_user", r.body, `{"uid": "<int>", "username": "alice", "fname": "Alice", "lname": "Liddell", "email": "alice@example.org",
		"affiliation": "VU", "credit": 20, "created": "<iso>", "uuid": null, "openid": null}`)
	if r.ct != ctText || strings.Contains(string(r.body), "password") {
		t.Fatalf("new_user answer %q %s", r.ct, r.body)
	}
	// new_user's refusals, in its order.
	for _, c := range []struct {
		change url.Values
		msg    string
	}{
		{url.Values{"email": {""}}, "Missing required field: 'email'"},
		{url.Values{}, "Username 'alice' is already taken"},
		{url.Values{"username": {"alice2"}}, "E-mail 'alice@example.org' is already registered"},
		{url.Values{"username": {"bob"}, "email": {"b@x"}, "credit": {"51"}}, "Cannot allocate 51 credit for a new user (max credit 50)."},
		{url.Values{"username": {"bob"}, "email": {"b@x"}, "credit": {"-1"}}, "Required credit -1 cannot be a negative integer."},
		{url.Values{"username": {"bob"}, "email": {"b@x"}, "credit": {"lots"}}, "Required credit 'lots' is not a valid integer."},
	} {
		f := url.Values{}
		for k, v := range newUser {
			f[k] = v
		}
		for k, v := range c.change {
			f[k] = v
		}
		exact(t, "new_user refusal", anon.call("POST", "/new_user", f), 200, ctJSON, jsonifyErr(c.msg))
	}
	r = anon.call("POST", "/new_user", url.Values{"username": {"bob"}, "email": {"bob@example.org"}, "password": {"bob-password"}, "credit": {"5"}})
	match(t, "new_user bob", r.body, `{"uid": "<int>", "username": "bob", "fname": null, "lname": null, "email": "bob@example.org",
		"affiliation": null, "credit": 5, "created": "<iso>", "uuid": null, "openid": null}`)

	// user.py login (login_required): wrong password, then right.
	exact(t, "login failure", e.login("alice", "wrong").call("POST", "/login", nil), 200, ctJSON, jsonifyErr("User authentication failed"))
	alice := e.login("alice", "alice-password")
	r = alice.call("POST", "/login", nil)
	user := match(t, "login", r.body, `{"uid": "<int>", "username": "alice", "fname": "Alice", "lname": "Liddell", "email": "alice@example.org",
		"affiliation": "VU", "credit": 20, "created": "<iso>", "uuid": null, "openid": null}`).(map[string]any)
	uid := int64(user["uid"].(float64))

	// user.py get_user_certs: certs.zip with the three files.
	alice.getcerts()
	if len(alice.certs) != 3 {
		t.Fatalf("zip files %v", keys(alice.certs))
	}
	leaf := leafOf(t, alice.certs["cert.pem"])
	if f := certs.Fields(leaf); f != (certs.Name{UID: strconv.FormatInt(uid, 10), ServiceLocator: "0", Role: "user", CN: "alice", O: "Contrail", Email: "alice@example.org"}) {
		t.Fatalf("user certificate subject %+v", f)
	}
	opensslSubject(t, alice.certs, fmt.Sprintf("UID = %d, serviceLocator = 0, O = Contrail, emailAddress = alice@example.org, CN = alice, role = user", uid))

	// Certificate routes. user.py user_config / user_credit.
	r = alice.call("GET", "/user_config", nil)
	match(t, "user_config", r.body, `{"uid": "<int>", "username": "alice", "fname": "Alice", "lname": "Liddell", "email": "alice@example.org",
		"affiliation": "VU", "credit": 20, "created": "<iso>", "uuid": null, "openid": null}`)
	exact(t, "user_credit", alice.call("GET", "/user_credit", nil), 200, ctText, "20")
	// No certificate: cert_required's 401.
	exact(t, "no certificate", anon.call("GET", "/user_credit", nil), 401, ctText, "cert_required: client certificate does NOT provide UID")

	// application.py: create_user made "New Application"; createapp.
	r = alice.call("POST", "/listapp", nil)
	match(t, "listapp", r.body, `[{"aid": "<int>", "name": "New Application", "uid": `+strconv.FormatInt(uid, 10)+`, "status": "INIT", "manager": null, "vmid": null, "cloud": null}]`)
	r = alice.call("POST", "/createapp", url.Values{"name": {"shop"}})
	if r.ct != ctJSON {
		t.Fatalf("createapp type %q", r.ct)
	}
	app := match(t, "createapp", r.body, `{"aid": "<int>", "name": "shop", "uid": `+strconv.FormatInt(uid, 10)+`, "status": "INIT", "manager": null, "vmid": null, "cloud": null}`).(map[string]any)
	aid := strconv.Itoa(int(app["aid"].(float64)))
	exact(t, "createapp again", alice.call("POST", "/createapp", url.Values{"name": {"shop"}}), 200, ctJSON, jsonifyErr(`Application name \"shop\" is already taken`))
	exact(t, "createapp no name", alice.call("POST", "/createapp", nil), 200, ctJSON, jsonifyErr(`\"name\" is a required argument`))
	r = alice.call("POST", "/createapp", url.Values{"name": {"web"}})
	app2 := match(t, "createapp web", r.body, `{"aid": "<int>", "name": "web", "uid": "<int>", "status": "INIT", "manager": null, "vmid": null, "cloud": null}`).(map[string]any)
	aid2 := strconv.Itoa(int(app2["aid"].(float64)))
	exact(t, "renameapp", alice.call("POST", "/renameapp/"+aid2, url.Values{"name": {"web2"}}), 200, ctJSON, "{}")

	// Services need a running manager: application.py callmanager's error.
	exact(t, "add before start", alice.call("POST", "/add/php", url.Values{"appid": {aid}}), 200, ctJSON,
		jsonifyErr("Application "+aid+" has not started. Try to start it first."))

	// startapp on the default cloud (Nova) and on the EC2 cloud.
	exact(t, "startapp", alice.call("POST", "/startapp/"+aid, nil), 200, ctJSON, "{}")
	exact(t, "startapp again", alice.call("POST", "/startapp/"+aid, nil), 200, ctJSON, jsonifyErr("Application already started"))
	exact(t, "startapp ec2", alice.call("POST", "/startapp/"+aid2+"/aws", nil), 200, ctJSON, "{}")
	exact(t, "startapp unknown app", alice.call("POST", "/startapp/99999", nil), 200, ctJSON, jsonifyErr("Application not found"))
	running := func(id string) bool {
		var l []map[string]any
		json.Unmarshal(alice.call("GET", "/listapp", nil).body, &l)
		for _, a := range l {
			if fmt.Sprint(a["aid"]) == id {
				if a["status"] == "ERROR" {
					t.Fatalf("application %s failed: %s", id, e.stderr)
				}
				return a["status"] == "RUNNING"
			}
		}
		return false
	}
	waitFor(t, 90*time.Second, "both managers", func() bool { return running(aid) && running(aid2) })
	r = alice.call("GET", "/listapp", nil)
	match(t, "listapp running", r.body, `[
		{"aid": "<int>", "name": "New Application", "uid": "<int>", "status": "INIT", "manager": null, "vmid": null, "cloud": null},
		{"aid": `+aid+`, "name": "shop", "uid": "<int>", "status": "RUNNING", "manager": "127.0.0.1", "vmid": "<str>", "cloud": "iaas"},
		{"aid": `+aid2+`, "name": "web2", "uid": "<int>", "status": "RUNNING", "manager": "127.0.0.1", "vmid": "<str>", "cloud": "aws"}]`)
	checkManagerContext(t, e, uid, aid)
	// Each manager costs its first hour.
	exact(t, "credit after start", alice.call("GET", "/user_credit", nil), 200, ctText, "18")

	// service.py add (cps-tools "service add php APP"): the manager's
	// add_service answers the service id.
	r = alice.call("POST", "/add/php", url.Values{"appid": {aid}})
	svc := `{"service": {"rec_id": "<int>", "sid": 1, "name": "New php service", "type": "php", "state": "INIT", "created": "<iso>",
		"cloud": null, "subnet": null, "application_id": ` + aid + `},
		"application": {"aid": ` + aid + `, "name": "shop", "uid": "<int>", "status": "RUNNING", "manager": "127.0.0.1", "vmid": "<str>", "cloud": "iaas"}}`
	match(t, "add php", r.body, svc)
	if e.vms.called("manager add_service") != 1 {
		t.Fatalf("manager calls %v", e.vms.calls)
	}
	exact(t, "add unknown type", alice.call("POST", "/add/cobol", url.Values{"appid": {aid}}), 200, ctJSON, jsonifyErr("Unknown service type 'cobol'"))
	match(t, "list", alice.call("POST", "/list", nil).body, "["+svc+"]")
	match(t, "list app", alice.call("GET", "/list/"+aid, nil).body, "["+svc+"]")
	exact(t, "rename", alice.call("POST", "/rename", url.Values{"app_id": {aid}, "service_id": {"1"}, "name": {"front"}}), 200, ctJSON, "{}")
	exact(t, "rename bad", alice.call("POST", "/rename", url.Values{"app_id": {aid}, "service_id": {"x"}, "name": {"n"}}), 200, ctJSON,
		jsonifyErr("Bad specification of application or service IDs"))

	// Another user sees nothing of alice's.
	bob := e.login("bob", "bob-password")
	bob.getcerts()
	exact(t, "bob list app", bob.call("GET", "/list/"+aid, nil), 200, ctText, "[]")
	exact(t, "bob stopapp", bob.call("POST", "/stopapp/"+aid, nil), 200, ctText, `{"error": "Application not found"}`)

	// The manager calls back (conpaas.core.callbacker) with its
	// certificate. cloud.py credit:
	mgr := e.vms.managerClient()
	exact(t, "credit", httpsPost(t, mgr, e.url+"/credit", nil, nil), 200, ctText, `{"credit": 18}`)
	// A user certificate on a manager route, a manager one on a user route.
	if r := httpsPost(t, alice.hc, e.url+"/credit", nil, nil); r.code != 403 {
		t.Fatalf("user certificate on /credit: %d %s", r.code, r.body)
	}
	if r := httpsPost(t, mgr, e.url+"/createapp", [][2]string{{"name", "x"}}, nil); r.code != 403 {
		t.Fatalf("manager certificate on /createapp: %d %s", r.code, r.body)
	}

	// A create_nodes no agent can come from (a field the agents' shell
	// context refuses) is refused before credit is taken and a key made
	// per node: the answer the route gives when no agent came up, and the
	// credit untouched. It used to debit, generate a key per node, fail
	// each and refund, so a long nodes_info kept the director busy for
	// hours at no cost.
	for _, bad := range [][2]string{{"service_type", "php;reboot"}, {"manager_ip", "$(reboot)"}, {"context", "{'X': '`reboot`'}"}} {
		fields := [][2]string{{"nodes_info", "[" + strings.Repeat("{'cloud': 'default'}, ", 50) + "{'cloud': 'default'}]"},
			{"app_id", aid}, {"service_id", "1"}, {"manager_ip", "127.0.0.1"}, {"service_type", "php"}, {"context", "{}"}}
		for i := range fields {
			if fields[i][0] == bad[0] {
				fields[i][1] = bad[1]
			}
		}
		exact(t, "create_nodes with "+bad[0]+" "+bad[1], httpsPost(t, mgr, e.url+"/create_nodes", fields, nil), 200, ctText, "[]")
		exact(t, "credit after a refused create_nodes", httpsPost(t, mgr, e.url+"/credit", nil, nil), 200, ctText, `{"credit": 18}`)
	}
	if log := e.stderr.String(); strings.Count(log, "create_nodes refused") != 3 || strings.Contains(log, "creating an agent") {
		t.Fatalf("refused create_nodes still tried agents:\n%s", log)
	}

	// cloud.py create_nodes with nodes_info and context as callbacker.py
	// posts them: str() of Python values.
	r = httpsPost(t, mgr, e.url+"/create_nodes", [][2]string{
		{"nodes_info", "[{'cloud': 'default', 'role': 'backend'}, {'cloud': 'default', 'role': 'web'}]"},
		{"app_id", aid}, {"service_id", "1"}, {"manager_ip", "127.0.0.1"}, {"service_type", "php"},
		{"context", "{'STRING': 'hello'}"},
	}, nil)
	nodes := match(t, "create_nodes", r.body, `[
		{"id": "<str>", "vmid": "<str>", "ip": "127.0.0.1", "private_ip": "<str>", "cloud_name": "iaas", "weight_backend": 100, "role": "backend", "volumes": []},
		{"id": "<str>", "vmid": "<str>", "ip": "127.0.0.1", "private_ip": "<str>", "cloud_name": "iaas", "weight_backend": 100, "role": "web", "volumes": []}]`).([]any)
	for _, n := range nodes {
		m := n.(map[string]any)
		if m["id"] != "iaas"+m["vmid"].(string) {
			t.Fatalf("ServiceNode id %v", m)
		}
	}
	if n := e.vms.called("agent check_process"); n < 2 {
		t.Fatalf("agents not polled: %v", e.vms.calls)
	}
	checkAgentContext(t, e, uid, aid)
	exact(t, "credit after agents", alice.call("GET", "/user_credit", nil), 200, ctText, "16")

	// user.py get_manager_cert: a CSR for an agent of this application.
	csr := makeCSR(t, strconv.FormatInt(uid, 10), aid, "agent")
	r = httpsPost(t, mgr, e.url+"/ca/get_cert.php", nil, [][3]string{{"csr", "csr.pem", csr}})
	if r.code != 200 || r.ct != ctText {
		t.Fatalf("get_cert.php: %d %s", r.code, r.body)
	}
	if f := certs.Fields(leafOf(t, r.body)); f.Role != "agent" || f.ServiceLocator != aid || f.UID != strconv.FormatInt(uid, 10) {
		t.Fatalf("signed certificate %+v", f)
	}
	// The original signed anything; a request for another user is refused.
	r = httpsPost(t, mgr, e.url+"/ca/get_cert.php", nil, [][3]string{{"csr", "csr.pem", makeCSR(t, "999", aid, "user")}})
	if r.code != 400 {
		t.Fatalf("foreign CSR signed: %d %s", r.code, r.body)
	}

	// callback/decrementUserCredit.php.
	exact(t, "decrement", httpsPost(t, mgr, e.url+"/callback/decrementUserCredit.php", [][2]string{{"decrement", "1"}}, nil), 200, ctJSON, "{\n  \"error\": false\n}")
	exact(t, "decrement too much", httpsPost(t, mgr, e.url+"/callback/decrementUserCredit.php", [][2]string{{"decrement", "100"}}, nil), 200, ctJSON, "{\n  \"error\": true\n}")

	// cloud.py list_resources.
	// In creation order (rid); the two managers were made concurrently, so
	// they are compared sorted by application and role.
	r = alice.call("GET", "/list_resources", nil)
	var rl []map[string]any
	json.Unmarshal(r.body, &rl)
	sort.SliceStable(rl, func(i, j int) bool {
		if rl[i]["app_id"] != rl[j]["app_id"] {
			return rl[i]["app_id"].(float64) < rl[j]["app_id"].(float64)
		}
		return rl[i]["role"].(string) > rl[j]["role"].(string)
	})
	sorted, _ := json.Marshal(rl)
	match(t, "list_resources", sorted, `[
		{"rid": "<int>", "vmid": "<str>", "app_id": `+aid+`, "service_id": 0, "charged": 1, "ip": "127.0.0.1", "role": "manager", "cloud": "default", "created": "<date>", "app_name": "shop"},
		{"rid": "<int>", "vmid": "<any>", "app_id": `+aid+`, "service_id": 1, "charged": 1, "ip": "127.0.0.1", "role": "agent", "cloud": "default", "created": "<date>", "app_name": "shop"},
		{"rid": "<int>", "vmid": "<any>", "app_id": `+aid+`, "service_id": 1, "charged": 1, "ip": "127.0.0.1", "role": "agent", "cloud": "default", "created": "<date>", "app_name": "shop"},
		{"rid": "<int>", "vmid": "<str>", "app_id": `+aid2+`, "service_id": 0, "charged": 1, "ip": "127.0.0.1", "role": "manager", "cloud": "aws", "created": "<date>", "app_name": "web2"}]`)
	if r.ct != ctText {
		t.Fatalf("list_resources type %q", r.ct)
	}

	// cloud.py remove_nodes: the nodes as json.dumps(ServiceNode.to_dict()).
	nj, _ := json.Marshal(nodes[:1])
	exact(t, "remove_nodes", httpsPost(t, mgr, e.url+"/remove_nodes", [][2]string{{"nodes", string(nj)}}, nil), 200, ctText, "{}")
	gone := nodes[0].(map[string]any)["vmid"].(string)
	for _, v := range e.nova.Servers() {
		if v.ID == gone && !v.Deleted {
			t.Fatalf("remove_nodes left %s", gone)
		}
	}

	// service.py remove.
	exact(t, "remove", alice.call("POST", "/remove", url.Values{"app_id": {aid}, "service_id": {"1"}}), 200, ctJSON, "{}")
	exact(t, "list after remove", alice.call("POST", "/list", nil), 200, ctText, "[]")

	// service.py download: what the VMs fetch, no login.
	r = anon.call("GET", "/download/ConPaaS.tar.gz", nil)
	if r.code != 200 || string(r.body) != string(e.tarball) {
		t.Fatalf("download: %d, %d bytes", r.code, len(r.body))
	}

	// application.py stopapp / deleteapp: simplejson.dumps({}).
	exact(t, "stopapp", alice.call("POST", "/stopapp/"+aid, nil), 200, ctText, "{}")
	for _, v := range e.nova.Servers() {
		if !v.Deleted {
			t.Fatalf("stopapp left server %s", v.ID)
		}
	}
	match(t, "listapp stopped", alice.call("GET", "/listapp", nil).body, `[
		{"aid": "<int>", "name": "New Application", "uid": "<int>", "status": "INIT", "manager": null, "vmid": null, "cloud": null},
		{"aid": `+aid+`, "name": "shop", "uid": "<int>", "status": "STOPPED", "manager": null, "vmid": null, "cloud": null},
		{"aid": `+aid2+`, "name": "web2", "uid": "<int>", "status": "RUNNING", "manager": "127.0.0.1", "vmid": "<str>", "cloud": "aws"}]`)
	exact(t, "deleteapp", alice.call("POST", "/deleteapp/"+aid2, nil), 200, ctText, "{}")
	e.ec2.Mu().Lock()
	for id, in := range e.ec2.Instances {
		if in.State != "terminated" {
			t.Errorf("deleteapp left instance %s (%s)", id, in.State)
		}
	}
	e.ec2.Mu().Unlock()
	exact(t, "deleteapp again", alice.call("POST", "/deleteapp/"+aid2, nil), 200, ctText, `{"error": "Application not found"}`)
	exact(t, "list_resources after", alice.call("GET", "/list_resources", nil), 200, ctText, "[]")
}

// opensslSubject has OpenSSL (the library of the original's pyOpenSSL)
// verify a certificate with the zip's CA and print its subject.
func opensslSubject(t *testing.T, files map[string][]byte, want string) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		if testutil.Strict() {
			t.Fatal("openssl is missing")
		}
		t.Skip("openssl is missing")
	}
	dir := t.TempDir()
	for n, b := range files {
		os.WriteFile(filepath.Join(dir, n), b, 0o600)
	}
	out, err := exec.Command("openssl", "verify", "-CAfile", filepath.Join(dir, "ca_cert.pem"), filepath.Join(dir, "cert.pem")).CombinedOutput()
	if err != nil || !strings.HasSuffix(strings.TrimSpace(string(out)), "OK") {
		t.Fatalf("openssl verify: %v %s", err, out)
	}
	out, err = exec.Command("openssl", "x509", "-in", filepath.Join(dir, "cert.pem"), "-noout", "-subject").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "subject="+want {
		t.Fatalf("openssl subject: %v %q, want %q", err, out, "subject="+want)
	}
}

// checkManagerContext reads the user data of the Nova manager VM: the
// original's context layout (ManagerController._generate_context_file)
// with a manager certificate for this user and application and the
// config.cfg the manager reads.
func checkManagerContext(t *testing.T, e *env, uid int64, aid string) {
	t.Helper()
	ud := string(e.nova.Servers()[0].UserData)
	if !strings.HasPrefix(ud, "#!/bin/bash\n") {
		t.Fatalf("user data is not a script:\n%s", ud)
	}
	files := contextFiles(ud)
	f := certs.Fields(leafOf(t, files["cert"]))
	if f != (certs.Name{UID: strconv.FormatInt(uid, 10), ServiceLocator: aid, Role: "manager", CN: "ConPaaS", O: "Contrail", Email: "info@conpaas.eu"}) {
		t.Fatalf("manager certificate %+v", f)
	}
	ca, _ := os.ReadFile(filepath.Join(e.dir, "certs", "ca_cert.pem"))
	if string(files["ca_cert"]) != string(ca) {
		t.Fatal("user data lacks the director's CA")
	}
	for _, want := range []string{
		"DIRECTOR=" + e.url + "\nSOURCE=$DIRECTOR/download\n",
		"curl -fsS --retry 5 --retry-delay 3 --retry-connrefused --cacert $CERT_DIR/ca_cert.pem -o $ROOT_DIR/ConPaaS.tar.gz $SOURCE/ConPaaS.tar.gz",
		"cat <<EOF > $ROOT_DIR/config.cfg\n[manager]\n",
		"\nDEPLOYMENT_NAME = cps-test\nUSER_ID = " + strconv.FormatInt(uid, 10) + "\nAPP_ID = " + aid + "\n",
		"\nMY_IP = $IP_PUBLIC\n", "\nDIRECTOR_URL = $DIRECTOR\n", "\nCONPAAS_HOME = $CPS_HOME\n",
		"$CPS_HOME/sbin/manager/default-cpsmanager -c $ROOT_DIR/config.cfg",
		"echo $manager_pid > $ROOT_DIR/manager.pid",
	} {
		if !strings.Contains(ud, want) {
			t.Errorf("manager user data lacks %q:\n%s", want, ud)
		}
	}
	if out, err := exec.Command("bash", "-n", "-c", ud).CombinedOutput(); err != nil {
		t.Fatalf("manager user data does not parse as bash: %v %s", err, out)
	}
}

// checkAgentContext reads an agent VM's user data (AgentController).
func checkAgentContext(t *testing.T, e *env, uid int64, aid string) {
	t.Helper()
	for _, v := range e.nova.Servers() {
		ud := string(v.UserData)
		f := certs.Fields(leafOf(t, contextFiles(ud)["cert"]))
		if f.Role != "agent" {
			continue
		}
		if f.UID != strconv.FormatInt(uid, 10) || f.ServiceLocator != aid {
			t.Fatalf("agent certificate %+v", f)
		}
		for _, want := range []string{"\nSOURCE=" + e.url + "/download\n", "[agent]\n\nTYPE = php\nUSER_ID = " + strconv.FormatInt(uid, 10) + "\nSERVICE_ID = 1\nAPP_ID = " + aid + "\n",
			"\nMANAGER_IP = 127.0.0.1\n", "echo $agent_pid > $ROOT_DIR/agent.pid"} {
			if !strings.Contains(ud, want) {
				t.Errorf("agent user data lacks %q:\n%s", want, ud)
			}
		}
		return
	}
	t.Fatal("no agent VM")
}

// makeCSR is a request as conpaas.core.https.x509.create_x509_req makes it.
func makeCSR(t *testing.T, uid, aid, role string) string {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	attr := func(oid asn1.ObjectIdentifier, v string) pkix.AttributeTypeAndValue {
		return pkix.AttributeTypeAndValue{Type: oid, Value: v}
	}
	subj := pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{
		attr(asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}, uid),
		attr(asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 7}, aid),
		attr(asn1.ObjectIdentifier{2, 5, 4, 10}, "Contrail"),
		attr(asn1.ObjectIdentifier{2, 5, 4, 3}, "ConPaaS"),
		attr(asn1.ObjectIdentifier{2, 5, 4, 72}, role),
	}}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subj}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// The same life cycle with DATABASE_URI naming a real MariaDB server, and
// a real PostgreSQL server, each started by the test on 127.0.0.1.
func TestProtocolMariaDB(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{dbURI: dbtest.MariaDB(t)})
	e.start()
	lifecycle(t, e)
}

func TestProtocolPostgreSQL(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{dbURI: dbtest.PostgreSQL(t)})
	e.start()
	lifecycle(t, e)
}
