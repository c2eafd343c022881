package keystonefake

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
)

// backend stands in for glance-api: a version document at / and an echo of
// the request everywhere else.
func backend(t *testing.T) *httptest.Server {
	t.Helper()
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			reply(w, http.StatusMultipleChoices, map[string]any{"versions": []map[string]any{
				{"id": "v2.16", "status": "CURRENT", "links": []map[string]any{{"rel": "self", "href": "http://" + r.Host + "/v2/"}}}}})
			return
		}
		n, _ := io.Copy(io.Discard, r.Body)
		reply(w, http.StatusOK, map[string]any{"method": r.Method, "path": r.URL.Path, "bytes": n,
			"token": r.Header.Get("X-Auth-Token")})
	}))
	t.Cleanup(b.Close)
	return b
}

func start(t *testing.T) *Server {
	return Start(t, backend(t).URL, "cps", "s3cret", "conpaas")
}

func do(t *testing.T, method, url, ctype, body string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestVersionDiscovery(t *testing.T) {
	s := start(t)
	resp, b := do(t, "GET", s.BaseURL+"/", "", "")
	var multi struct {
		Versions struct {
			Values []struct {
				ID, Status string
				Links      []struct{ Rel, Href string }
			}
		}
	}
	if err := json.Unmarshal(b, &multi); err != nil || resp.StatusCode != 300 || len(multi.Versions.Values) != 1 {
		t.Fatalf("GET / = %d %s (%v)", resp.StatusCode, b, err)
	}
	v := multi.Versions.Values[0]
	if v.ID != "v3.14" || v.Status != "stable" || len(v.Links) != 1 || v.Links[0].Href != s.URL+"/" {
		t.Errorf("GET / version = %+v", v)
	}
	resp, b = do(t, "GET", s.URL, "", "")
	var one struct{ Version struct{ ID, Status string } }
	if err := json.Unmarshal(b, &one); err != nil || resp.StatusCode != 200 || one.Version.ID != "v3.14" {
		t.Errorf("GET /v3 = %d %s (%v)", resp.StatusCode, b, err)
	}
}

func TestTokenRequests(t *testing.T) {
	s := start(t)
	const unauth = `{"error":{"code":401,"message":"The request you have made requires authentication.","title":"Unauthorized"}}`
	pw := func(user, domain, password, scope string) string {
		return `{"auth":{"identity":{"methods":["password"],"password":{"user":{` + user + domain + `"password":"` + password + `"}}}` + scope + `}}`
	}
	byName := `"name":"cps",`
	dom := `"domain":{"name":"Default"},`
	scope := `,"scope":{"project":{"name":"conpaas","domain":{"id":"default"}}}`
	cases := []struct {
		name, ctype, body string
		code              int
		want              string // exact body if it starts with {, else a substring
	}{
		{"name-domain-project", "application/json", pw(byName, dom, "s3cret", scope), 201, `"catalog"`},
		{"user-id-project-id", "application/json; charset=UTF-8",
			pw(`"id":"`+s.UserID+`",`, "", "s3cret", `,"scope":{"project":{"id":"`+s.ProjectID+`"}}`), 201, `"project"`},
		{"unscoped", "application/json", pw(byName, dom, "s3cret", ""), 201, `"user"`},
		{"wrong-password", "application/json", pw(byName, dom, "nope", scope), 401, unauth},
		{"unknown-user", "application/json", pw(`"name":"root",`, dom, "s3cret", scope), 401, unauth},
		{"wrong-user-domain", "application/json", pw(byName, `"domain":{"name":"Other"},`, "s3cret", scope), 401, unauth},
		{"unknown-project", "application/json", pw(byName, dom, "s3cret", `,"scope":{"project":{"name":"x","domain":{"id":"default"}}}`), 401, unauth},
		{"unsupported-method", "application/json", `{"auth":{"identity":{"methods":["totp"],"totp":{}}}}`, 401, "unsupported method"},
		{"not-json", "application/json", `{"auth":`, 400, "Malformed request body"},
		{"form", "application/x-www-form-urlencoded", "auth=x", 400, "application/json"},
		{"no-auth", "application/json", `{}`, 400, "'auth' is a required property"},
		{"no-identity", "application/json", `{"auth":{}}`, 400, "'identity' is a required property"},
		{"no-methods", "application/json", `{"auth":{"identity":{}}}`, 400, "'methods' is a required property"},
		{"empty-methods", "application/json", `{"auth":{"identity":{"methods":[]}}}`, 400, "too short"},
		{"methods-not-list", "application/json", `{"auth":{"identity":{"methods":"password"}}}`, 400, "Malformed"},
		{"no-password-block", "application/json", `{"auth":{"identity":{"methods":["password"]}}}`, 400, "find password in identity"},
		{"no-user", "application/json", `{"auth":{"identity":{"methods":["password"],"password":{}}}}`, 400, "find user in password"},
		{"user-without-domain", "application/json", pw(byName, "", "s3cret", scope), 400, "find domain in user"},
		{"project-without-domain", "application/json", pw(byName, dom, "s3cret", `,"scope":{"project":{"name":"conpaas"}}`), 400, "find domain in project"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := s.Issued.Load()
			resp, b := do(t, "POST", s.URL+"/auth/tokens", c.ctype, c.body)
			got := strings.TrimSpace(string(b))
			if resp.StatusCode != c.code {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.code, got)
			}
			exact := strings.HasPrefix(c.want, "{")
			if exact && got != c.want || !exact && !strings.Contains(got, c.want) {
				t.Errorf("body %s, want %s", got, c.want)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			tok := resp.Header.Get("X-Subject-Token")
			if (c.code == 201) != (tok != "") || (c.code == 201) != (s.Issued.Load() == before+1) {
				t.Errorf("X-Subject-Token %q, issued %d -> %d", tok, before, s.Issued.Load())
			}
			if c.code == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Keystone uri=") {
				t.Errorf("WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
			}
			if c.code != 201 {
				var e struct{ Error struct{ Code int } }
				if json.Unmarshal(b, &e); e.Error.Code != c.code {
					t.Errorf("error body code %d, want %d", e.Error.Code, c.code)
				}
			}
		})
	}
}

// TestGophercloud authenticates the way clouds/glance does, with versioned
// and unversioned auth URLs, and finds the image endpoint in the catalog.
func TestGophercloud(t *testing.T) {
	s := start(t)
	ctx := context.Background()
	for _, authURL := range []string{s.URL, s.BaseURL} {
		t.Run(authURL, func(t *testing.T) {
			pc, err := openstack.AuthenticatedClient(ctx, gophercloud.AuthOptions{IdentityEndpoint: authURL,
				Username: "cps", Password: "s3cret", DomainName: "Default", AllowReauth: true,
				Scope: &gophercloud.AuthScope{ProjectName: "conpaas", DomainName: "Default"}})
			if err != nil {
				t.Fatal(err)
			}
			sc, err := openstack.NewImageV2(pc, gophercloud.EndpointOpts{Region: Region})
			if err != nil {
				t.Fatal(err)
			}
			if sc.Endpoint != s.ProxyURL+"/" {
				t.Errorf("image endpoint %s, want %s/", sc.Endpoint, s.ProxyURL)
			}
			var echo struct{ Path, Token string }
			if _, err := sc.Get(ctx, sc.ServiceURL("images"), &echo, nil); err != nil {
				t.Fatal(err)
			}
			if echo.Path != "/v2/images" || echo.Token != pc.Token() {
				t.Errorf("backend saw %+v, token %s", echo, pc.Token())
			}

			// An expired token is refused; gophercloud re-authenticates once.
			issued, rejected := s.Issued.Load(), s.Rejected.Load()
			s.ExpireTokens()
			if _, err := sc.Get(ctx, sc.ServiceURL("images"), &echo, nil); err != nil {
				t.Fatal(err)
			}
			if s.Issued.Load() != issued+1 || s.Rejected.Load() != rejected+1 || echo.Token != pc.Token() {
				t.Errorf("after expiry: issued %d -> %d, rejected %d -> %d", issued, s.Issued.Load(), rejected, s.Rejected.Load())
			}
		})
	}
	if _, err := openstack.AuthenticatedClient(ctx, gophercloud.AuthOptions{IdentityEndpoint: s.URL,
		Username: "cps", Password: "wrong", DomainName: "Default"}); !gophercloud.ResponseCodeIs(err, 401) {
		t.Errorf("wrong password: %v, want a 401", err)
	}
}

func TestProxyChecksTokens(t *testing.T) {
	s := start(t)
	issue := func(scope string) string {
		resp, b := do(t, "POST", s.URL+"/auth/tokens", "application/json",
			`{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"cps","domain":{"id":"default"},"password":"s3cret"}}}`+scope+`}}`)
		if resp.StatusCode != 201 {
			t.Fatalf("token: %d %s", resp.StatusCode, b)
		}
		return resp.Header.Get("X-Subject-Token")
	}
	good := issue(`,"scope":{"project":{"id":"` + s.ProjectID + `"}}`)
	unscoped := issue("")
	cases := []struct {
		name, token string
		code        int
	}{
		{"no-token", "", 401},
		{"unknown-token", "gAAAAAbogus", 401},
		{"unscoped-token", unscoped, 401},
		{"valid-token", good, 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, r := s.Authorized.Load(), s.Rejected.Load()
			var hdr []string
			if c.token != "" {
				hdr = []string{"X-Auth-Token", c.token}
			}
			resp, b := do(t, "PUT", s.ProxyURL+"/v2/images/x/file", "application/octet-stream", "data", hdr...)
			if resp.StatusCode != c.code {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.code, b)
			}
			ok := c.code == 200
			if (s.Authorized.Load() == a+1) != ok || (s.Rejected.Load() == r+1) == ok {
				t.Errorf("authorized %d -> %d, rejected %d -> %d", a, s.Authorized.Load(), r, s.Rejected.Load())
			}
			if ok && !strings.Contains(string(b), `"bytes":4`) {
				t.Errorf("backend saw %s", b)
			}
		})
	}
	s.ExpireTokens()
	if resp, _ := do(t, "GET", s.ProxyURL+"/v2/images", "", "", "X-Auth-Token", good); resp.StatusCode != 401 {
		t.Errorf("expired token: %d, want 401", resp.StatusCode)
	}
	if got := s.Requests(); len(got) != 1 || got[0] != "PUT /v2/images/x/file" {
		t.Errorf("Requests() = %v", got)
	}
}

// TestProxyStreams proves the proxy does not buffer uploads: the backend
// must see the first MiB while the client still holds back the rest, and
// the Content-Length must survive (glance-api reads chunked bodies slowly).
func TestProxyStreams(t *testing.T) {
	const mib = 1 << 20
	first := make(chan struct{})
	type result struct {
		n      int64
		length int64
		te     []string
	}
	done := make(chan result, 1)
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.CopyN(io.Discard, r.Body, mib)
		close(first)
		m, _ := io.Copy(io.Discard, r.Body)
		done <- result{n + m, r.ContentLength, r.TransferEncoding}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(b.Close)
	s := Start(t, b.URL, "cps", "s3cret", "conpaas")
	resp, _ := do(t, "POST", s.URL+"/auth/tokens", "application/json",
		`{"auth":{"identity":{"methods":["password"],"password":{"user":{"id":"`+s.UserID+`","password":"s3cret"}}},"scope":{"project":{"id":"`+s.ProjectID+`"}}}}`)
	tok := resp.Header.Get("X-Subject-Token")

	pr, pw := io.Pipe()
	const size = 8 * mib
	go func() {
		chunk := bytes.Repeat([]byte{7}, mib)
		pw.Write(chunk)
		select {
		case <-first:
		case <-time.After(10 * time.Second):
			pw.CloseWithError(io.ErrUnexpectedEOF)
			return
		}
		for i := 1; i < size/mib; i++ {
			pw.Write(chunk)
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("PUT", s.ProxyURL+"/v2/images/x/file", pr)
	req.ContentLength = size
	req.Header.Set("X-Auth-Token", tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("upload through the proxy: %v (did it buffer the body?)", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("status %d", resp.StatusCode)
	}
	r := <-done
	if r.n != size || r.length != size || len(r.te) != 0 {
		t.Errorf("backend got %d bytes, Content-Length %d, Transfer-Encoding %v; want %d, %d, none", r.n, r.length, r.te, size, size)
	}
}

// TestTokenMethod: a token gets another (rescoped) token, and GET
// /v3/auth/tokens validates one, as Keystone does; an unknown token is 404.
func TestTokenMethod(t *testing.T) {
	s := start(t)
	resp, b := do(t, "POST", s.URL+"/auth/tokens", "application/json",
		`{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"cps","domain":{"id":"default"},"password":"s3cret"}}}}}`)
	if resp.StatusCode != 201 {
		t.Fatalf("password: %d %s", resp.StatusCode, b)
	}
	unscoped := resp.Header.Get("X-Subject-Token")
	byToken := func(id, scope string) (*http.Response, []byte) {
		return do(t, "POST", s.URL+"/auth/tokens", "application/json", `{"auth":{"identity":{"methods":["token"],"token":{"id":"`+id+`"}}`+scope+`}}`)
	}
	resp, b = byToken(unscoped, `,"scope":{"project":{"name":"conpaas","domain":{"name":"Default"}}}`)
	if resp.StatusCode != 201 || !strings.Contains(string(b), `"catalog"`) || !strings.Contains(string(b), `"methods":["token"]`) {
		t.Fatalf("rescope: %d %s", resp.StatusCode, b)
	}
	scoped := resp.Header.Get("X-Subject-Token")
	if resp, b = byToken(unscoped, `,"scope":{"project":{"name":"other","domain":{"name":"Default"}}}`); resp.StatusCode != 401 {
		t.Errorf("rescope to another project: %d %s", resp.StatusCode, b)
	}
	if resp, b = byToken("gAAAAAbogus", ""); resp.StatusCode != 404 || !strings.Contains(string(b), "Could not find token: gAAAAAbogus.") {
		t.Errorf("unknown token: %d %s", resp.StatusCode, b)
	}
	if resp, b = do(t, "GET", s.URL+"/auth/tokens", "", "", "X-Auth-Token", unscoped, "X-Subject-Token", scoped); resp.StatusCode != 200 || !strings.Contains(string(b), `"catalog"`) {
		t.Errorf("validate: %d %s", resp.StatusCode, b)
	}
	if resp, b = do(t, "GET", s.URL+"/auth/tokens", "", "", "X-Auth-Token", unscoped, "X-Subject-Token", "gAAAAAbogus"); resp.StatusCode != 404 {
		t.Errorf("validate an unknown token: %d %s", resp.StatusCode, b)
	}
}
