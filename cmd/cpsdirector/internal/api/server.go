// Package api is the ConPaaS Director protocol as the original Python
// director (conpaas-director/cpsdirector) served it: the same routes,
// methods, form-encoded parameters (username and password on password
// routes, a client certificate on the others), status codes and response
// bodies, so conpaas-client, cps-tools, cpsfrontend and the managers of
// ConPaaS.tar.gz work unchanged. Where the original leaked (password
// hashes in user dicts, cloud error text, other users' services) or
// crashed (500s on missing fields), it answers what the route meant to.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/conpaas/cps/cmd/cpsdirector/internal/auth"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/certs"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/config"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/db"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/nodes"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/rpc"
)

// Version is what /version answers: the ConPaaS release whose protocol
// this director speaks, marked as cps's.
const Version = "2.0.0-cps"

// ServiceTypes are the original's manager_services, in its order.
var ServiceTypes = []string{"php", "java", "helloworld", "xtreemfs", "mysql", "generic"}

// Server holds what handlers need.
type Server struct {
	Cfg     *config.Config
	DB      *db.DB
	CA      *certs.Authority
	Nodes   *nodes.Controller
	Checker *auth.Checker
	// Limit rate-limits the password routes per client address.
	Limit *auth.RateLimiter
	RPC   *rpc.Client
	Log   *slog.Logger
}

// Handler returns the routed protocol.
func (s *Server) Handler() http.Handler {
	m := http.NewServeMux()
	// director.py
	m.HandleFunc("GET /version", s.version)
	m.HandleFunc("GET /support_external_idp", s.supportBool(func() bool { return s.Cfg.SupportExternalIDP }))
	m.HandleFunc("GET /support_openid", s.supportBool(func() bool { return s.Cfg.SupportOpenID }))
	m.HandleFunc("GET /debug_level/{type}", s.debugLevel)
	// idp.py: the OpenID pages.
	m.HandleFunc("GET /Xversion", s.version)
	m.HandleFunc("GET /Xsupport_external_idp", s.supportBool(func() bool { return s.Cfg.SupportExternalIDP }))
	for _, p := range []string{"/index", "/idplogin", "/Xidplogin", "/create-profile", "/profile", "/logout"} {
		m.HandleFunc(p, s.noOpenID)
	}
	// user.py
	m.HandleFunc("POST /new_user", s.limited(s.newUser))
	m.HandleFunc("POST /login", s.limited(s.password(s.login)))
	for _, m2 := range []string{"GET ", "POST "} {
		m.HandleFunc(m2+"/getcerts", s.limited(s.password(s.getCerts)))
	}
	m.HandleFunc("GET /user_config", s.user(s.userConfig))
	m.HandleFunc("GET /user_credit", s.user(s.userCredit))
	m.HandleFunc("POST /ca/get_cert.php", s.manager(s.getCert))
	m.HandleFunc("POST /callback/decrementUserCredit.php", s.manager(s.decrementCredit))
	// application.py
	m.HandleFunc("POST /createapp", s.user(s.createApp))
	m.HandleFunc("POST /startapp/{aid}", intPath(s.user(s.startApp)))
	m.HandleFunc("POST /startapp/{aid}/{cloud}", intPath(s.user(s.startApp)))
	m.HandleFunc("POST /stopapp/{aid}", intPath(s.user(s.stopApp(false))))
	m.HandleFunc("POST /deleteapp/{aid}", intPath(s.user(s.stopApp(true))))
	m.HandleFunc("POST /renameapp/{aid}", intPath(s.user(s.renameApp)))
	for _, m2 := range []string{"GET ", "POST "} {
		m.HandleFunc(m2+"/listapp", s.user(s.listApps))
	}
	// service.py
	m.HandleFunc("GET /available_services", s.availableServices)
	m.HandleFunc("POST /add/{type}", s.user(s.addService))
	m.HandleFunc("POST /rename", s.user(s.renameService))
	m.HandleFunc("POST /remove", s.user(s.removeService))
	for _, m2 := range []string{"GET ", "POST "} {
		m.HandleFunc(m2+"/list", s.user(s.listServices))
	}
	for _, m2 := range []string{"GET ", "POST "} {
		m.HandleFunc(m2+"/list/{aid}", intPath(s.user(s.listServices)))
	}
	m.HandleFunc("GET /download/ConPaaS.tar.gz", s.tarball)
	// cloud.py
	m.HandleFunc("GET /available_clouds", s.availableClouds)
	m.HandleFunc("POST /create_nodes", s.manager(s.createNodes))
	m.HandleFunc("POST /remove_nodes", s.manager(s.removeNodes))
	m.HandleFunc("POST /create_volume", s.manager(s.createVolume))
	m.HandleFunc("POST /attach_volume", s.manager(s.attachVolume))
	m.HandleFunc("POST /detach_volume", s.manager(s.detachVolume))
	m.HandleFunc("POST /destroy_volume", s.manager(s.destroyVolume))
	m.HandleFunc("POST /credit", s.manager(s.credit))
	m.HandleFunc("GET /list_resources", s.user(s.listResources))
	// manifest.py
	m.HandleFunc("POST /upload_manifest", s.user(s.uploadManifest))
	m.HandleFunc("POST /download_manifest/{aid}", s.user(s.downloadManifest))
	m.HandleFunc("GET /download_data/{file}", s.downloadData)
	// cps: the CA certificate, for tools that bootstrap trust by fingerprint.
	m.HandleFunc("GET /ca_cert.pem", s.caCert)
	return headers(m)
}

// headers adds what the original's build_response set on every answer
// (Access-Control-Allow-Origin: *), plus transport hardening.
func headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Strict-Transport-Security", "max-age=31536000")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// respond writes a build_response(simplejson.dumps(v)) answer: one line,
// Flask's default text/html type.
func respond(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(dumps(v))
}

// respondJSON writes a build_response(jsonify(v)) answer.
func respondJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(jsonify(v))
}

// text writes a plain string answer with status code.
func text(w http.ResponseWriter, code int, s string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	w.Write([]byte(s))
}

func errObj(msg string) Obj { return Obj{{"error", msg}} }

// internal logs err and answers without its text (database and cloud
// errors are the operator's business, not the user's).
func (s *Server) internal(w http.ResponseWriter, r *http.Request, err error) {
	s.Log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusInternalServerError)
	w.Write(jsonify(errObj("internal error (see the director's log)")))
}

// Column sizes of the original's schema (VARCHAR(n), in characters).
// MySQL and PostgreSQL refuse longer values with an error the user would
// see only as an internal error; SQLite stores anything, so one request
// could put megabytes into a name (and /new_user needs no login).
const (
	maxName   = 256 // application and service names, fname, lname, affiliation
	maxUUID   = 80
	maxOpenID = 200
)

// tooLong is the answer's error when v does not fit its column of max
// characters, "" when it does.
func tooLong(field, v string, max int) string {
	if utf8.RuneCountInString(v) <= max {
		return ""
	}
	return fmt.Sprintf("%q is longer than %d characters", field, max)
}

// fits answers {"error": "\"field\" is longer than N characters"} when v
// does not fit its column.
func fits(w http.ResponseWriter, field, v string, max int) bool {
	if msg := tooLong(field, v, max); msg != "" {
		respondJSON(w, errObj(msg))
		return false
	}
	return true
}

// maxForm bounds request bodies (manifests and startup scripts included).
const maxForm = 4 << 20

// vals parses request.values as Flask did: the query string plus an
// urlencoded or multipart/form-data body (the managers post multipart).
func vals(w http.ResponseWriter, r *http.Request) error {
	if r.Form != nil {
		return nil
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "multipart/form-data" {
		return r.ParseMultipartForm(maxForm)
	}
	return r.ParseForm()
}

// value is request.values.get(name): "" and false when absent.
func value(r *http.Request, name string) (string, bool) {
	v, ok := r.Form[name]
	if !ok || len(v) == 0 {
		return "", false
	}
	return v[0], true
}

// limited rate-limits a password route per client address.
func (s *Server) limited(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.Limit != nil && !s.Limit.Allow(r.RemoteAddr, time.Now()) {
			w.Header().Set("Retry-After", "1")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			w.Write(jsonify(errObj("Too many requests from your address: try again in a few seconds")))
			return
		}
		h(w, r)
	}
}

// password is the original's login_required: username and password (or,
// where the configuration enables external identity providers, the uuid
// or OpenID they assigned). Failure is {"error": "User authentication
// failed"} with status 200, as the original answered.
func (s *Server) password(h func(http.ResponseWriter, *http.Request, *db.User)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := vals(w, r); err != nil {
			text(w, http.StatusBadRequest, "bad request body")
			return
		}
		username, _ := value(r, "username")
		password, _ := value(r, "password")
		if strings.TrimSpace(username) != "" {
			u, err := s.Checker.Login(r.Context(), username, password)
			switch {
			case err == nil:
				h(w, r, u)
				return
			case errors.Is(err, auth.ErrBusy):
				w.Header().Set("Retry-After", "2")
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusServiceUnavailable)
				w.Write(jsonify(errObj(err.Error())))
				return
			case !errors.Is(err, auth.ErrBadLogin):
				s.internal(w, r, err)
				return
			}
			s.Log.Warn("failed login", "user", username, "remote", r.RemoteAddr)
		}
		for _, alt := range []struct {
			field   string
			enabled bool
			lookup  func(context.Context, string) (*db.User, error)
		}{{"uuid", s.Cfg.SupportExternalIDP, s.DB.UserByUUID}, {"openid", s.Cfg.SupportOpenID || s.Cfg.SupportExternalIDP, s.DB.UserByOpenID}} {
			v, _ := value(r, alt.field)
			if v == "<none>" || strings.TrimSpace(v) == "" || !alt.enabled {
				continue
			}
			if u, err := alt.lookup(r.Context(), v); err == nil {
				h(w, r, u)
				return
			}
		}
		respondJSON(w, errObj(auth.ErrBadLogin.Error()))
	}
}

// identity returns the request's client certificate. The TLS handshake
// verified it against the CA (certs.Authority.ServerTLS); on a kept-alive
// connection only its validity period can change.
func (s *Server) identity(r *http.Request) *certs.Identity {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil
	}
	leaf := r.TLS.PeerCertificates[0]
	if now := time.Now(); now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return nil
	}
	return &certs.Identity{Name: certs.Fields(leaf), Serial: leaf.SerialNumber, Leaf: leaf}
}

func (s *Server) certFail(w http.ResponseWriter, r *http.Request, err error) {
	var ce *auth.CertError
	if !errors.As(err, &ce) {
		s.internal(w, r, err)
		return
	}
	if ce.Status == http.StatusOK {
		respond(w, false) // the original's simplejson.dumps(False)
		return
	}
	text(w, ce.Status, ce.Msg)
}

// user is cert_required(role='user').
func (s *Server) user(h func(http.ResponseWriter, *http.Request, *db.User)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		// The certificate first, as the original's cert_required did
		// (Flask read the body only when the view asked for a value):
		// a request without one no longer gets its body (up to maxForm)
		// read into memory, which let anyone hold 4 MB per connection.
		u, err := auth.CertUser(r.Context(), s.DB, s.identity(r), certs.RoleUser)
		if err != nil {
			s.certFail(w, r, err)
			return
		}
		if err := vals(w, r); err != nil {
			text(w, http.StatusBadRequest, "bad request body")
			return
		}
		h(w, r, u)
	}
}

// manager is cert_required(role='manager'): the certificate's
// serviceLocator must be an application of its UID.
func (s *Server) manager(h func(http.ResponseWriter, *http.Request, *db.User, *db.Application, *certs.Identity)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := s.identity(r)
		u, err := auth.CertUser(r.Context(), s.DB, id, certs.RoleManager)
		if err != nil {
			s.certFail(w, r, err)
			return
		}
		a, err := s.DB.Application(r.Context(), u.UID, auth.Locator(id))
		if errors.Is(err, db.ErrNotFound) {
			respond(w, false)
			return
		}
		if err != nil {
			s.internal(w, r, err)
			return
		}
		// The body only once the certificate is known (see user).
		if err := vals(w, r); err != nil {
			text(w, http.StatusBadRequest, "bad request body")
			return
		}
		h(w, r, u, a, id)
	}
}

// intPath answers 404 before anything else (authentication included) when
// the {aid} of the path is not an integer, as Flask's <int:...> routing did.
func intPath(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if _, ok := pathInt(w, r, "aid"); ok {
			h(w, r)
		}
	}
}

// pathInt reads an <int:...> path element; like Flask's converter, it
// accepts digits only and the route is a 404 otherwise.
func pathInt(w http.ResponseWriter, r *http.Request, name string) (int64, bool) {
	v := r.PathValue(name)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || strings.TrimLeft(v, "0123456789") != "" {
		http.NotFound(w, r)
		return 0, false
	}
	return n, true
}
