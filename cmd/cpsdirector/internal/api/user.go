package api

import (
	"archive/zip"
	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/conpaas/cps/cmd/cpsdirector/internal/auth"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/certs"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/db"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/names"
)

func nullable(n sql.NullString) any {
	if !n.Valid {
		return nil
	}
	return n.String
}

// userDict is the original's User.to_dict without the password hash,
// which the original sent and cps never does.
func userDict(u *db.User) Obj {
	return Obj{
		{"uid", u.UID}, {"username", u.Username},
		{"fname", nullable(u.Fname)}, {"lname", nullable(u.Lname)},
		{"email", nullable(u.Email)}, {"affiliation", nullable(u.Affiliation)},
		{"credit", u.Credit}, {"created", u.Created.ISO()},
		{"uuid", nullable(u.UUID)}, {"openid", nullable(u.OpenID)},
	}
}

// newUser is POST /new_user (user.py new_user), messages and checks in the
// original's order; cps adds name normalisation, look-alike refusal and a
// minimum password length.
func (s *Server) newUser(w http.ResponseWriter, r *http.Request) {
	if err := vals(w, r); err != nil {
		text(w, http.StatusBadRequest, "bad request body")
		return
	}
	v := map[string]string{}
	has := map[string]bool{}
	for _, f := range []string{"username", "fname", "lname", "email", "affiliation", "password", "credit", "uuid", "openid"} {
		v[f], has[f] = value(r, f)
	}
	if v["uuid"] == "<none>" {
		v["uuid"] = ""
	}
	fail := func(msg string) {
		s.Log.Warn("new_user refused", "user", v["username"], "why", msg)
		respondJSON(w, errObj(msg))
	}
	for _, f := range []string{"username", "email", "password"} {
		if v[f] == "" {
			fail(fmt.Sprintf("Missing required field: '%s'", f))
			return
		}
	}
	name := names.Normalize(v["username"])
	if err := auth.ValidateUsername(name); err != nil {
		fail(err.Error())
		return
	}
	if err := auth.ValidateEmail(v["email"]); err != nil {
		fail(err.Error())
		return
	}
	for _, f := range []struct {
		name string
		max  int
	}{{"fname", maxName}, {"lname", maxName}, {"affiliation", maxName}, {"uuid", maxUUID}, {"openid", maxOpenID}} {
		if msg := tooLong(f.name, v[f.name], f.max); msg != "" {
			fail(msg)
			return
		}
	}
	credit, err := strconv.ParseInt(v["credit"], 10, 64)
	switch {
	case err != nil:
		shown := v["credit"]
		if !has["credit"] {
			shown = "None"
		}
		fail(fmt.Sprintf("Required credit '%s' is not a valid integer.", shown))
		return
	case credit < 0:
		fail(fmt.Sprintf("Required credit %s cannot be a negative integer.", v["credit"]))
		return
	case credit > int64(s.Cfg.MaxCredit) || credit > db.MaxCredit:
		fail(fmt.Sprintf("Cannot allocate %s credit for a new user (max credit %d).", v["credit"], min(int64(s.Cfg.MaxCredit), db.MaxCredit)))
		return
	}
	hash, err := s.Checker.Hash(r.Context(), v["password"])
	if errors.Is(err, auth.ErrBusy) {
		w.Header().Set("Retry-After", "2")
		text(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if err != nil {
		fail(err.Error())
		return
	}
	opt := func(f string) sql.NullString { return sql.NullString{String: v[f], Valid: has[f]} }
	u, err := s.DB.CreateUser(r.Context(), db.NewUser{
		Username: name, Key: names.Key(name), Fname: opt("fname"), Lname: opt("lname"), Email: opt("email"),
		Affiliation: opt("affiliation"), PasswordHash: hash, Credit: credit, UUID: opt("uuid"), OpenID: opt("openid"),
	})
	var conflict *db.Conflict
	if errors.As(err, &conflict) {
		if conflict.Field == "email" {
			fail(fmt.Sprintf("E-mail '%s' is already registered", v["email"]))
		} else {
			fail(fmt.Sprintf("Username '%s' is already taken", v["username"]))
		}
		return
	}
	if err != nil {
		s.Log.Error("creating user", "user", name, "err", err)
		fail("Error upon user creation")
		return
	}
	s.Log.Info("user created", "user", u.Username, "uid", u.UID)
	respond(w, userDict(u))
}

func (s *Server) login(w http.ResponseWriter, r *http.Request, u *db.User) {
	s.Log.Info("login", "user", u.Username)
	respond(w, userDict(u))
}

// getCerts is /getcerts: a zip of cert.pem, key.pem and ca_cert.pem, the
// certificate's subject as the original's (UID, serviceLocator 0, role
// user, CN = username, O = Contrail, emailAddress).
func (s *Server) getCerts(w http.ResponseWriter, r *http.Request, u *db.User) {
	var b certs.Bundle
	err := s.Checker.Do(r.Context(), func() error {
		var err error
		b, err = s.CA.Issue(certs.Name{UID: strconv.FormatInt(u.UID, 10), ServiceLocator: "0", Role: certs.RoleUser,
			Email: u.Email.String, CN: u.Username, O: "Contrail"}, u.CertGen, time.Now())
		return err
	})
	if errors.Is(err, auth.ErrBusy) {
		w.Header().Set("Retry-After", "2")
		text(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range []struct {
		name string
		data []byte
	}{{"ca_cert.pem", b.CACert}, {"key.pem", b.Key}, {"cert.pem", b.Cert}} {
		h := &zip.FileHeader{Name: f.name, Method: zip.Deflate, Modified: time.Now()}
		h.SetMode(0o600)
		fw, err := zw.CreateHeader(h)
		if err != nil {
			s.internal(w, r, err)
			return
		}
		fw.Write(f.data)
	}
	if err := zw.Close(); err != nil {
		s.internal(w, r, err)
		return
	}
	s.Log.Info("new certificates", "user", u.Username)
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", "attachment; filename=certs.zip")
	w.Write(buf.Bytes())
}

func (s *Server) userConfig(w http.ResponseWriter, r *http.Request, u *db.User) {
	respond(w, userDict(u))
}

func (s *Server) userCredit(w http.ResponseWriter, r *http.Request, u *db.User) {
	respond(w, u.Credit)
}

// getCert is /ca/get_cert.php: a manager has a certificate request signed.
// The original signed any subject; cps signs agent and manager
// certificates of the manager's own user and application only.
func (s *Server) getCert(w http.ResponseWriter, r *http.Request, u *db.User, a *db.Application, id *certs.Identity) {
	var csr []byte
	if r.MultipartForm != nil && len(r.MultipartForm.File["csr"]) > 0 {
		f, err := r.MultipartForm.File["csr"][0].Open()
		if err == nil {
			var b bytes.Buffer
			b.ReadFrom(f)
			f.Close()
			csr = b.Bytes()
		}
	} else if v, ok := value(r, "csr"); ok {
		csr = []byte(v)
	}
	if len(csr) == 0 {
		text(w, http.StatusBadRequest, "no csr file in the request")
		return
	}
	cert, err := s.CA.SignCSR(csr, func(n certs.Name) error {
		if n.UID != id.UID || n.ServiceLocator != id.ServiceLocator {
			return fmt.Errorf("the request names user %q application %q; this manager may only ask for user %s application %s", n.UID, n.ServiceLocator, id.UID, id.ServiceLocator)
		}
		if n.Role != certs.RoleAgent && n.Role != certs.RoleManager {
			return fmt.Errorf("the request asks for role %q; a manager may only ask for agent or manager certificates", n.Role)
		}
		return nil
	}, time.Now())
	if err != nil {
		s.Log.Warn("certificate request refused", "user", u.UID, "app", a.AID, "err", err)
		text(w, http.StatusBadRequest, err.Error())
		return
	}
	s.Log.Info("certificate request signed", "user", u.UID, "app", a.AID)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(cert)
}

// decrementCredit is /callback/decrementUserCredit.php: take decrement
// (default 1) credits if the user has them. (The original's handler called
// its helper with the wrong arguments and always failed with a 500.)
func (s *Server) decrementCredit(w http.ResponseWriter, r *http.Request, u *db.User, a *db.Application, _ *certs.Identity) {
	d := int64(1)
	if v, ok := value(r, "decrement"); ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			respondJSON(w, Obj{{"error", true}})
			return
		}
		d = n
	}
	ok := false
	if d > 0 {
		var err error
		if ok, err = s.DB.Debit(r.Context(), u.UID, d); err != nil {
			s.internal(w, r, err)
			return
		}
	}
	s.Log.Info("credit decrement", "user", u.UID, "app", a.AID, "decrement", d, "ok", ok)
	respondJSON(w, Obj{{"error", !ok}})
}

func (s *Server) caCert(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Write(s.CA.CAPEM)
}

// tarball is /download/ConPaaS.tar.gz, which managers and agents fetch at
// boot. A fixed file: no part of the request reaches the file system.
func (s *Server) tarball(w http.ResponseWriter, r *http.Request) {
	f, err := os.Open(s.Cfg.TarballPath)
	if errors.Is(err, os.ErrNotExist) {
		s.Log.Warn("ConPaaS.tar.gz missing: managers cannot bootstrap", "path", s.Cfg.TarballPath)
		http.NotFound(w, r)
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		s.internal(w, r, fmt.Errorf("%s is not a regular file", s.Cfg.TarballPath))
		return
	}
	// Who bootstrapped when: the trace of a manager or agent coming up.
	s.Log.Info("ConPaaS.tar.gz requested", "remote", r.RemoteAddr, "bytes", st.Size())
	// Flask guessed the type from the name, as mimetypes does.
	w.Header().Set("Content-Type", "application/x-tar")
	http.ServeContent(w, r, "ConPaaS.tar.gz", st.ModTime(), f)
}
