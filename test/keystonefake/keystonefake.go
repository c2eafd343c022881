// Package keystonefake is a documented fake of the Keystone v3 token API,
// with a token-checking reverse proxy in front of a real service.
//
// Debian's keystone package needs a full deployment before it can issue a
// token (Apache/uWSGI WSGI app, a database with keystone-manage db_sync,
// fernet key repositories, bootstrap of admin user, project, roles, service
// and endpoints), far too much for a unit test. This fake implements the part
// of https://docs.openstack.org/api-ref/identity/v3/ that clients such as
// gophercloud and keystoneauth use for password authentication, with the same
// request validation, status codes, headers and JSON bodies:
//
//   - GET / and GET /v3: version discovery (300 with versions.values, and
//     200 with version).
//   - GET /v3/auth/tokens: validate the X-Subject-Token (200 or 404).
//   - POST /v3/auth/tokens: password method, user by id or by name and
//     domain (id or name), or token method (an issued token); project scope
//     by id or by name and domain, or none. A malformed body is 400, bad
//     credentials or an unknown project 401 with Keystone's error body (it
//     never says which part was wrong), an unknown or expired token 404
//     ("Could not find token"); success is 201 with X-Subject-Token and,
//     for a project-scoped token, a catalog with one "image" service
//     (glance) pointing at the proxy.
//
// The proxy plays keystonemiddleware's role in front of the backend (e.g. a
// glance-api running with auth_strategy = noauth): a request without an
// X-Auth-Token naming an issued, project-scoped, unexpired token is answered
// 401 and never reaches the backend. Bodies are streamed both ways, so
// multi-gigabyte uploads are not buffered. Counters let tests assert that
// the token was really used.
package keystonefake

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Identity constants of the fake cloud.
const (
	DomainID   = "default"
	DomainName = "Default"
	Region     = "RegionOne"
	// TokenTTL is how long issued tokens are valid (Keystone's default).
	TokenTTL = time.Hour
	// timeFormat is Keystone's expires_at / issued_at format.
	timeFormat = "2006-01-02T15:04:05.000000Z"
)

// Service is one entry of the catalog a project-scoped token carries.
type Service struct {
	Type, Name, URL string
}

// Server is a running Keystone fake and token-checking proxy, or (New)
// the token API alone, served by a fake of a whole cloud (test/novafake)
// beside its own services: one Keystone fake for every test.
type Server struct {
	URL      string // auth URL, e.g. http://127.0.0.1:40123/v3
	BaseURL  string // unversioned identity URL (version discovery), e.g. http://127.0.0.1:40123
	ProxyURL string // the image endpoint in the catalog, e.g. http://127.0.0.1:40124

	User, Password, Project string
	UserID, ProjectID       string
	// Services is the catalog (default: the identity service and the
	// proxy as "image"); Region its endpoints' region (default Region).
	Services []Service
	Region   string

	// Issued counts tokens issued; AuthFailures counts token requests
	// answered 400 or 401.
	Issued, AuthFailures atomic.Int64
	// Authorized counts proxied requests that carried a valid token,
	// Rejected those answered 401 by the proxy.
	Authorized, Rejected atomic.Int64

	mu       sync.Mutex
	tokens   map[string]token
	requests []string // "METHOD path" of authorized proxied requests
}

type token struct {
	issued, expires time.Time
	scoped          bool
	methods         []string
}

// Start serves the fake until the test ends. backend is the service behind
// the proxy (e.g. a noauth glance-api); user, password and project are the
// only credentials Keystone accepts (all in domain "Default").
func Start(t testing.TB, backend, user, password, project string) *Server {
	t.Helper()
	target, err := url.Parse(backend)
	if err != nil || target.Scheme == "" || target.Host == "" {
		t.Fatalf("keystonefake: backend %q is not an absolute URL", backend)
	}
	s := New(user, password, project)
	ks := httptest.NewServer(s.Handler())
	t.Cleanup(ks.Close)
	s.BaseURL = ks.URL
	s.URL = ks.URL + "/v3"

	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
		// Pass response bytes on as they come (image downloads).
		FlushInterval: -1,
	}
	px := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.valid(r.Header.Get("X-Auth-Token")) {
			s.Rejected.Add(1)
			// What keystonemiddleware answers (delay_auth_decision = false).
			w.Header().Set("WWW-Authenticate", fmt.Sprintf("Keystone uri=%q", s.BaseURL))
			keystoneError(w, http.StatusUnauthorized, "The request you have made requires authentication.")
			return
		}
		s.Authorized.Add(1)
		s.mu.Lock()
		s.requests = append(s.requests, r.Method+" "+r.URL.Path)
		s.mu.Unlock()
		// r.Body is handed to the transport as is: streamed, never buffered.
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(px.Close)
	s.ProxyURL = px.URL
	s.Services = []Service{{"identity", "keystone", s.URL}, {"image", "glance", s.ProxyURL}}
	return s
}

// New is the token API alone: serve Handler at BaseURL (the unversioned
// identity URL; set it and URL, BaseURL + "/v3") and check requests'
// X-Auth-Token with Valid. Only user, password and project (domain
// "Default") get a token.
func New(user, password, project string) *Server {
	return &Server{User: user, Password: password, Project: project, Region: Region,
		UserID: newID(), ProjectID: newID(), tokens: map[string]token{}}
}

// Handler serves the identity API: version discovery and /v3/auth/tokens.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.keystone) }

// Valid says whether id is an issued, project-scoped, unexpired token.
func (s *Server) Valid(id string) bool { return s.valid(id) }

// Requests returns "METHOD path" of every request the proxy let through.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// ExpireTokens makes every token issued so far expired, as if TokenTTL had
// passed (clients must re-authenticate).
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	past := time.Now().Add(-time.Second)
	for id, tk := range s.tokens {
		tk.expires = past
		s.tokens[id] = tk
	}
}

func (s *Server) valid(id string) bool {
	if id == "" {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	tk, ok := s.tokens[id]
	return ok && tk.scoped && time.Now().Before(tk.expires)
}

func newID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b) // Keystone ids are uuid4().hex
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// keystoneError writes Keystone's error body, e.g.
// {"error":{"code":401,"message":"...","title":"Unauthorized"}}.
func keystoneError(w http.ResponseWriter, code int, msg string) {
	reply(w, code, map[string]any{"error": map[string]any{"code": code, "message": msg, "title": http.StatusText(code)}})
}

// versionDoc is one entry of Keystone's version discovery.
func (s *Server) versionDoc() map[string]any {
	return map[string]any{
		"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
		"links": []map[string]any{{"rel": "self", "href": s.BaseURL + "/v3/"}},
		"media-types": []map[string]any{{"base": "application/json",
			"type": "application/vnd.openstack.identity-v3+json"}},
	}
}

func (s *Server) keystone(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Vary", "X-Auth-Token")
	p := strings.TrimSuffix(r.URL.Path, "/")
	switch {
	case p == "" && r.Method == http.MethodGet:
		reply(w, http.StatusMultipleChoices, map[string]any{"versions": map[string]any{"values": []any{s.versionDoc()}}})
	case p == "/v3" && r.Method == http.MethodGet:
		reply(w, http.StatusOK, map[string]any{"version": s.versionDoc()})
	case p == "/v3/auth/tokens" && r.Method == http.MethodPost:
		s.issue(w, r)
	case p == "/v3/auth/tokens" && r.Method == http.MethodGet:
		s.validate(w, r)
	case p == "" || p == "/v3" || p == "/v3/auth/tokens":
		w.Header().Set("Allow", map[bool]string{true: "GET, POST", false: "GET"}[p == "/v3/auth/tokens"])
		keystoneError(w, http.StatusMethodNotAllowed, "The method is not allowed for the requested URL.")
	default:
		keystoneError(w, http.StatusNotFound, "The resource could not be found.")
	}
}

// The token request, pointers where Keystone tells "missing" from "empty".
type (
	domainRef struct {
		ID   *string `json:"id"`
		Name *string `json:"name"`
	}
	userRef struct {
		ID       *string    `json:"id"`
		Name     *string    `json:"name"`
		Password *string    `json:"password"`
		Domain   *domainRef `json:"domain"`
	}
	projectRef struct {
		ID     *string    `json:"id"`
		Name   *string    `json:"name"`
		Domain *domainRef `json:"domain"`
	}
	authRequest struct {
		Auth *struct {
			Identity *struct {
				Methods  *[]string `json:"methods"`
				Password *struct {
					User *userRef `json:"user"`
				} `json:"password"`
				Token *struct {
					ID *string `json:"id"`
				} `json:"token"`
			} `json:"identity"`
			Scope *struct {
				Project *projectRef `json:"project"`
			} `json:"scope"`
		} `json:"auth"`
	}
)

// errBadRequest and errUnauthorized carry Keystone's messages.
type authError struct {
	code int
	msg  string
}

func badRequest(format string, a ...any) *authError {
	return &authError{http.StatusBadRequest, fmt.Sprintf(format, a...)}
}

var unauthorized = &authError{http.StatusUnauthorized, "The request you have made requires authentication."}

const clientError = " The server could not comply with the request since it is either malformed or otherwise incorrect. The client is assumed to be in error."

func (s *Server) issue(w http.ResponseWriter, r *http.Request) {
	scoped, methods, aerr := s.check(r)
	if aerr != nil {
		s.AuthFailures.Add(1)
		if aerr.code == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf("Keystone uri=%q", s.BaseURL))
		}
		keystoneError(w, aerr.code, aerr.msg)
		return
	}
	b := make([]byte, 32)
	rand.Read(b)
	id := "gAAAAA" + hex.EncodeToString(b) // Fernet tokens start like this
	now := time.Now().UTC()
	tk := token{issued: now, expires: now.Add(TokenTTL), scoped: scoped, methods: methods}
	s.mu.Lock()
	s.tokens[id] = tk
	s.mu.Unlock()
	s.Issued.Add(1)
	w.Header().Set("X-Subject-Token", id)
	reply(w, http.StatusCreated, map[string]any{"token": s.tokenBody(tk)})
}

// validate is GET /v3/auth/tokens: X-Auth-Token (any valid token) asks
// about X-Subject-Token, 200 with its body or 404.
func (s *Server) validate(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	auth, aok := s.tokens[r.Header.Get("X-Auth-Token")]
	subj, sok := s.tokens[r.Header.Get("X-Subject-Token")]
	s.mu.Unlock()
	now := time.Now()
	switch {
	case !aok || !now.Before(auth.expires):
		keystoneError(w, http.StatusUnauthorized, "The request you have made requires authentication.")
	case !sok || !now.Before(subj.expires):
		keystoneError(w, http.StatusNotFound, "Could not find token: "+r.Header.Get("X-Subject-Token")+".")
	default:
		w.Header().Set("X-Subject-Token", r.Header.Get("X-Subject-Token"))
		reply(w, http.StatusOK, map[string]any{"token": s.tokenBody(subj)})
	}
}

// tokenBody is the token as Keystone describes it; a project-scoped one
// carries the catalog.
func (s *Server) tokenBody(tk token) map[string]any {
	domain := map[string]any{"id": DomainID, "name": DomainName}
	tok := map[string]any{
		"methods":    tk.methods,
		"user":       map[string]any{"id": s.UserID, "name": s.User, "domain": domain, "password_expires_at": nil},
		"audit_ids":  []string{newID()[:22]},
		"expires_at": tk.expires.UTC().Format(timeFormat),
		"issued_at":  tk.issued.UTC().Format(timeFormat),
	}
	if tk.scoped {
		tok["project"] = map[string]any{"id": s.ProjectID, "name": s.Project, "domain": domain}
		tok["is_domain"] = false
		tok["roles"] = []map[string]any{{"id": newID(), "name": "member"}, {"id": newID(), "name": "reader"}}
		var catalog []map[string]any
		for _, sv := range s.Services {
			catalog = append(catalog, map[string]any{"id": newID(), "type": sv.Type, "name": sv.Name, "endpoints": []map[string]any{
				{"id": newID(), "interface": "public", "region": s.Region, "region_id": s.Region, "url": sv.URL}}})
		}
		tok["catalog"] = catalog
	}
	return tok
}

// check validates a token request the way Keystone does: request shape
// first (400), then credentials and scope (401, never saying which part was
// wrong; an unknown token is 404). It reports whether the token is
// project-scoped and the methods it was issued by.
func (s *Server) check(r *http.Request) (bool, []string, *authError) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, _ := mime.ParseMediaType(ct); mt != "application/json" {
			return false, nil, badRequest("Expecting to find application/json in Content-Type header." + clientError)
		}
	}
	var req authRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		return false, nil, badRequest("Malformed request body: %v."+clientError, err)
	}
	a := req.Auth
	switch {
	case a == nil:
		return false, nil, badRequest("Invalid input for field 'auth': 'auth' is a required property")
	case a.Identity == nil:
		return false, nil, badRequest("Invalid input for field 'auth': 'identity' is a required property")
	case a.Identity.Methods == nil:
		return false, nil, badRequest("Invalid input for field 'identity': 'methods' is a required property")
	}
	methods := *a.Identity.Methods
	if len(methods) == 0 {
		return false, nil, badRequest("Invalid input for field 'identity/methods': [] is too short")
	}
	token := slices.Contains(methods, "token")
	if !token && !slices.Contains(methods, "password") {
		// totp, application_credential...: not in this fake.
		return false, nil, &authError{http.StatusUnauthorized, "Attempted to authenticate with an unsupported method."}
	}
	var pr *projectRef
	if a.Scope != nil {
		pr = a.Scope.Project
		switch {
		case pr == nil:
			// Domain, system and trust scopes are not in this fake.
			return false, nil, badRequest("Invalid input for field 'auth/scope': only project scope is supported by keystonefake")
		case pr.ID == nil && pr.Name == nil:
			return false, nil, badRequest("Expecting to find id or name in project." + clientError)
		case pr.ID == nil && pr.Domain == nil:
			return false, nil, badRequest("Expecting to find domain in project." + clientError)
		case pr.Domain != nil && pr.Domain.ID == nil && pr.Domain.Name == nil:
			return false, nil, badRequest("Expecting to find id or name in domain." + clientError)
		}
	}
	if token {
		t := a.Identity.Token
		if t == nil || t.ID == nil {
			return false, nil, badRequest("Expecting to find id in token." + clientError)
		}
		s.mu.Lock()
		tk, ok := s.tokens[*t.ID]
		s.mu.Unlock()
		if !ok || !time.Now().Before(tk.expires) {
			return false, nil, &authError{http.StatusNotFound, "Could not find token: " + *t.ID + "."}
		}
		scoped, aerr := s.checkProject(pr)
		return scoped, methods, aerr
	}
	if a.Identity.Password == nil {
		return false, nil, badRequest("Expecting to find password in identity." + clientError)
	}
	u := a.Identity.Password.User
	switch {
	case u == nil:
		return false, nil, badRequest("Expecting to find user in password." + clientError)
	case u.ID == nil && u.Name == nil:
		return false, nil, badRequest("Expecting to find id or name in user." + clientError)
	case u.ID == nil && u.Domain == nil:
		return false, nil, badRequest("Expecting to find domain in user." + clientError)
	case u.Domain != nil && u.Domain.ID == nil && u.Domain.Name == nil:
		return false, nil, badRequest("Expecting to find id or name in domain." + clientError)
	case u.Password == nil:
		return false, nil, badRequest("Expecting to find password in user." + clientError)
	}
	if u.ID != nil {
		if *u.ID != s.UserID {
			return false, nil, unauthorized
		}
	} else if *u.Name != s.User || !inDomain(u.Domain) {
		return false, nil, unauthorized
	}
	if *u.Password != s.Password {
		return false, nil, unauthorized
	}
	scoped, aerr := s.checkProject(pr)
	return scoped, methods, aerr
}

// checkProject checks the scope of a token request whose user is known.
func (s *Server) checkProject(pr *projectRef) (bool, *authError) {
	if pr == nil {
		return false, nil // unscoped: no catalog, not accepted by the proxy
	}
	if pr.ID != nil {
		if *pr.ID != s.ProjectID {
			return false, unauthorized
		}
	} else if *pr.Name != s.Project || !inDomain(pr.Domain) {
		return false, unauthorized
	}
	return true, nil
}

func inDomain(d *domainRef) bool {
	if d.ID != nil {
		return *d.ID == DomainID
	}
	return *d.Name == DomainName
}
