package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// The password routes are rate-limited per address: a burst of wrong
// passwords from one address is cut off (429) instead of each costing a
// bcrypt check.
func TestLoginRateLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.start()
	newUserWithCerts(t, e, "alice", 1)
	var mu sync.Mutex
	codes := map[string]int{}
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ {
		wg.Add(1)
		route := []string{"/login", "/getcerts"}[i%2]
		go func() {
			defer wg.Done()
			r := e.login("alice", "wrong").call("POST", route, nil)
			mu.Lock()
			codes[fmt.Sprint(route, " ", r.code)]++
			if r.code == 429 && (r.ct != ctJSON || !strings.Contains(string(r.body), "Too many requests")) {
				t.Errorf("429 answer: %q %s", r.ct, r.body)
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	// Burst 10, then 2 per second: most of the 40 are cut off.
	if codes["/login 429"]+codes["/getcerts 429"] < 20 || codes["/login 429"] == 0 || codes["/getcerts 429"] == 0 {
		t.Fatalf("answers by route and status: %v", codes)
	}
}

// A cloud's error text goes to the log, not to the user.
func TestCloudErrorsStayInTheLog(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.start()
	alice := newUserWithCerts(t, e, "alice", 5)
	ids := createApps(t, alice, 1)
	// The image disappears from Glance: Nova refuses the server.
	e.nova.DeleteImage("5f1c6d2e-glance-conpaas")
	exact(t, "startapp", alice.call("POST", "/startapp/"+ids[0], nil), 200, ctJSON, "{}")
	waitFor(t, 30*time.Second, "the application to fail", func() bool { return apps(t, alice)[ids[0]] == "ERROR" })
	waitFor(t, 5*time.Second, "the cloud's error in the log", func() bool {
		return strings.Contains(e.stderr.String(), "Image 5f1c6d2e-glance-conpaas could not be found")
	})
	for _, p := range []string{"/listapp", "/list_resources", "/user_config"} {
		if b := alice.call("GET", p, nil).body; strings.Contains(string(b), "could not be found") {
			t.Fatalf("%s shows the cloud's error: %s", p, b)
		}
	}
	// The credit of the failed start came back.
	exact(t, "credit", alice.call("GET", "/user_credit", nil), 200, ctText, "5")
	// A manager's volume on a cloud without Cinder: the answer says see the log.
	e.nova.AddImage("5f1c6d2e-glance-conpaas", "")
	ids = createApps(t, alice, 1)
	alice.call("POST", "/startapp/"+ids[0], nil)
	waitFor(t, 90*time.Second, "the manager", func() bool { return apps(t, alice)[ids[0]] == "RUNNING" })
	var vm string
	for _, v := range e.nova.Servers() {
		if !v.Deleted {
			vm = v.ID
		}
	}
	r := httpsPost(t, e.vms.managerClient(), e.url+"/create_volume", [][2]string{{"size", "1024"}, {"name", "v"}, {"vm_id", vm}, {"cloud", "default"}}, nil)
	exact(t, "create_volume", r, 200, ctJSON, jsonifyErr("creating the volume failed (see the director's log)"))
	waitFor(t, 5*time.Second, "the cloud's error in the log", func() bool { return strings.Contains(e.stderr.String(), "Cinder") })
}

// User names are stored NFC: a name typed decomposed logs in as the
// precomposed one, and the two are one account.
func TestUsernamesNFC(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.start()
	anon := e.login("", "")
	r := anon.call("POST", "/new_user", url.Values{"username": {"cafe\u0301"}, "email": {"c@x"}, "password": {"cafe-password"}, "credit": {"1"}})
	if !strings.Contains(string(r.body), `"username": "caf\u00e9"`) {
		t.Fatalf("new_user: %s", r.body)
	}
	if r := e.login("café", "cafe-password").call("POST", "/login", nil); !strings.Contains(string(r.body), `"uid"`) {
		t.Fatalf("precomposed login: %s", r.body)
	}
	if r := e.login("cafe\u0301", "cafe-password").call("POST", "/login", nil); !strings.Contains(string(r.body), `"uid"`) {
		t.Fatalf("decomposed login: %s", r.body)
	}
	exact(t, "same name again", anon.call("POST", "/new_user", url.Values{"username": {"café"}, "email": {"d@x"}, "password": {"cafe-password"}, "credit": {"1"}}),
		200, ctJSON, jsonifyErr(`Username 'caf\u00e9' is already taken`))
}

// TestNewUserEmailFitsCertificate: /new_user used to accept an address
// getcerts cannot put into a certificate (emailAddress is ASCII), and the
// user's certificate then failed every TLS handshake; such an address is
// now refused when the user is created.
func TestNewUserEmailFitsCertificate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.start()
	anon := e.login("", "")
	for _, c := range []struct {
		name, email, want string
	}{
		{"emil", "\u00e9mil@x.org", `e-mail address \"\u00e9mil@x.org\": use ASCII characters only`},
		{"longmail", strings.Repeat("x", 300) + "@x.org", "e-mail address too long"},
	} {
		r := anon.call("POST", "/new_user", url.Values{"username": {c.name}, "email": {c.email}, "password": {"long-password"}, "credit": {"1"}})
		if !strings.Contains(string(r.body), c.want) {
			t.Errorf("new_user %s: %s, want %s", c.name, r.body, c.want)
		}
	}
	if r := anon.call("POST", "/new_user", url.Values{"username": {"emil"}, "email": {"emil@x.org"}, "password": {"long-password"}, "credit": {"1"}}); !strings.Contains(string(r.body), `"uid"`) {
		t.Fatalf("new_user with an ASCII address: %s", r.body)
	}
}

// TestNamesFitColumns: names are VARCHAR(256) (uuid 80, openid 200) in the
// original's schema. MySQL and PostgreSQL refused longer values with an
// internal error, and SQLite stored anything, so one request could write
// megabytes into a name (/new_user without a login). Each route now says
// which field is too long; a name of exactly the column's size still fits.
func TestNamesFitColumns(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.start()
	anon := e.login("", "")
	long, fit := strings.Repeat("é", 257), strings.Repeat("é", 256)
	newUser := func(extra url.Values) url.Values {
		v := url.Values{"username": {"col"}, "email": {"col@x.org"}, "password": {"long-password"}, "credit": {"1"}}
		for k, x := range extra {
			v[k] = x
		}
		return v
	}
	for _, c := range []struct {
		field, value string
		max          int
	}{{"fname", long, 256}, {"lname", long, 256}, {"affiliation", long, 256}, {"uuid", strings.Repeat("u", 81), 80}, {"openid", strings.Repeat("o", 201), 200}} {
		exact(t, "new_user "+c.field, anon.call("POST", "/new_user", newUser(url.Values{c.field: {c.value}})),
			200, ctJSON, jsonifyErr(fmt.Sprintf(`\"%s\" is longer than %d characters`, c.field, c.max)))
	}
	if r := anon.call("POST", "/new_user", newUser(url.Values{"fname": {fit}})); !strings.Contains(string(r.body), `"uid"`) {
		t.Fatalf("new_user with a 256-character fname: %s", r.body)
	}
	u := e.login("col", "long-password")
	u.getcerts()
	for _, c := range []struct {
		path string
		form url.Values
		want string
	}{
		{"/createapp", url.Values{"name": {long}}, `\"name\" is longer than 256 characters`},
		{"/renameapp/1", url.Values{"name": {long}}, `\"name\" is longer than 256 characters`},
		{"/upload_manifest", url.Values{"manifest": {`{"Application": "` + strings.Repeat("a", 252) + `"}`}}, `\"Application\" is longer than 251 characters`},
		{"/upload_manifest", url.Values{"manifest": {`{"Application": "m", "Services": [{"Type": "php", "ServiceName": "` + long + `"}]}`}}, "The uploded manifest is not valid"},
	} {
		exact(t, c.path, u.call("POST", c.path, c.form), 200, ctJSON, jsonifyErr(c.want))
	}
	if r := u.call("POST", "/createapp", url.Values{"name": {fit}}); !strings.Contains(string(r.body), `"aid"`) {
		t.Fatalf("createapp with a 256-character name: %s", r.body)
	}
}

// TestNoCertNoBodyRead: the certificate routes read the form (up to 4 MB
// into memory) before looking at the certificate, so anyone could hold
// 4 MB per connection without one (150 such POSTs: 600 MB). The
// certificate is now checked first, as the original's cert_required did:
// a request without one gets its 401 at once, before its body has even
// been sent.
func TestNoCertNoBodyRead(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.start()
	for _, path := range []string{"/createapp", "/renameapp/1", "/create_nodes", "/ca/get_cert.php"} {
		conn, err := tls.Dial("tcp", strings.TrimPrefix(e.url, "https://"), e.tlsConfig(nil))
		if err != nil {
			t.Fatal(err)
		}
		// Announce 4,000,000 bytes, send 10: only a server that does not
		// wait for the body answers within the deadline.
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 4000000\r\n\r\nname=aaaaa", path)
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		status, err := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		if err != nil || !strings.Contains(status, " 401 ") {
			t.Errorf("%s without a certificate: %q %v, want 401 at once", path, status, err)
		}
	}
}
