// Package api is the director's HTTPS API: password login and client
// certificate issuance, then client-certificate authenticated calls on
// users, clouds, images, applications and services. Starting a service
// starts its manager VM on the chosen cloud with the catalogue's image.
package api

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"

	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/conpaas/cps/clouds/compute"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/auth"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/certs"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/config"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/db"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/imagesel"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/userdata"
)

// ServiceTypes are the ConPaaS services a manager can run.
var ServiceTypes = []string{"php", "java", "mysql", "galera", "xtreemfs", "selenium", "taskfarm", "generic", "flink", "helloworld"}

// Server holds what handlers need.
type Server struct {
	Cfg     *config.Config
	DB      *db.DB
	CA      *certs.Authority
	Clouds  map[string]compute.Cloud
	Choices map[string]imagesel.Choice
	Log     *slog.Logger
	// CloudTimeout bounds each cloud call made on behalf of a request.
	CloudTimeout time.Duration
}

// Handler returns the routed API.
func (s *Server) Handler() http.Handler {
	if s.CloudTimeout == 0 {
		s.CloudTimeout = 2 * time.Minute
	}
	m := http.NewServeMux()
	// Downloads for agents and managers: fixed names, no path from the
	// request ever reaches the file system.
	m.HandleFunc("GET /ca_cert.pem", s.caCert)
	m.HandleFunc("GET /ConPaaS.tar.gz", s.tarball)
	// Password endpoints.
	m.HandleFunc("POST /login", s.login)
	m.HandleFunc("POST /get_certificate", s.getCertificate)
	// Certificate-authenticated API.
	m.HandleFunc("GET /user", s.user(s.whoami))
	m.HandleFunc("GET /clouds", s.user(s.listClouds))
	m.HandleFunc("GET /images", s.user(s.listImages))
	m.HandleFunc("GET /applications", s.user(s.listApps))
	m.HandleFunc("POST /applications", s.user(s.createApp))
	m.HandleFunc("DELETE /applications/{app}", s.user(s.deleteApp))
	m.HandleFunc("GET /applications/{app}/services", s.user(s.listServices))
	m.HandleFunc("POST /applications/{app}/services", s.user(s.startService))
	m.HandleFunc("GET /services", s.user(s.listServices))
	m.HandleFunc("GET /services/{svc}", s.user(s.serviceStatus))
	m.HandleFunc("POST /services/{svc}/stop", s.user(s.stopService))
	m.HandleFunc("DELETE /services/{svc}", s.user(s.stopService))
	return headers(m)
}

func headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Strict-Transport-Security", "max-age=31536000")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

type apiError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"error":"internal error"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

func fail(w http.ResponseWriter, code int, format string, a ...any) {
	writeJSON(w, code, apiError{Error: fmt.Sprintf(format, a...)})
}

// internal logs err and answers 500 without leaking details.
func (s *Server) internal(w http.ResponseWriter, r *http.Request, err error) {
	s.Log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	fail(w, http.StatusInternalServerError, "internal error (see the director's log)")
}

// decode reads a small JSON body strictly.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		fail(w, http.StatusBadRequest, "bad request body: %v", err)
		return false
	}
	if dec.More() {
		fail(w, http.StatusBadRequest, "bad request body: trailing data")
		return false
	}
	return true
}

type userKey struct{}

// user wraps a handler that needs the certificate's user.
func (s *Server) user(h func(http.ResponseWriter, *http.Request, *db.User)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u, err := auth.UserFromRequest(r.Context(), s.DB, r)
		if err != nil {
			if errors.Is(err, auth.ErrNoCert) {
				w.Header().Set("WWW-Authenticate", `Certificate realm="ConPaaS"`)
			}
			fail(w, http.StatusUnauthorized, "%v", err)
			return
		}
		h(w, r, u)
	}
}

func (s *Server) caCert(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Write(s.CA.CAPEM)
}

func (s *Server) tarball(w http.ResponseWriter, r *http.Request) {
	f, err := os.Open(s.Cfg.TarballPath)
	if errors.Is(err, os.ErrNotExist) {
		s.Log.Warn("ConPaaS.tar.gz missing: managers cannot bootstrap", "path", s.Cfg.TarballPath)
		fail(w, http.StatusNotFound, "ConPaaS.tar.gz is not installed on this director")
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
	w.Header().Set("Content-Type", "application/gzip")
	http.ServeContent(w, r, "ConPaaS.tar.gz", st.ModTime(), f)
}

type loginReq struct {
	Username string `json:"username"`
	Password string `json:"password"`
	// CSR is a PEM certificate request (get_certificate): the client keeps
	// its private key.
	CSR string `json:"csr,omitempty"`
}

func (s *Server) checkLogin(w http.ResponseWriter, r *http.Request) (*db.User, *loginReq) {
	var req loginReq
	if !decode(w, r, &req) {
		return nil, nil
	}
	u, err := auth.Login(r.Context(), s.DB, req.Username, req.Password)
	if errors.Is(err, auth.ErrBadLogin) {
		s.Log.Warn("failed login", "user", req.Username, "remote", r.RemoteAddr)
		fail(w, http.StatusUnauthorized, "%v", err)
		return nil, nil
	}
	if err != nil {
		s.internal(w, r, err)
		return nil, nil
	}
	return u, &req
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	u, _ := s.checkLogin(w, r)
	if u == nil {
		return
	}
	writeJSON(w, http.StatusOK, u)
}

type certResp struct {
	Cert   string `json:"cert"`
	CACert string `json:"ca_cert"`
	// Key is only set when the client sent no CSR.
	Key string `json:"key,omitempty"`
}

func (s *Server) getCertificate(w http.ResponseWriter, r *http.Request) {
	u, req := s.checkLogin(w, r)
	if u == nil {
		return
	}
	var resp certResp
	var pub any
	if req.CSR != "" {
		csr, err := certs.ParseCSR([]byte(req.CSR))
		if err != nil {
			fail(w, http.StatusBadRequest, "%v", err)
			return
		}
		pub = csr.PublicKey
	} else {
		// Old clients (cps-tools) expect the director to make the key.
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			s.internal(w, r, err)
			return
		}
		der, _ := x509.MarshalPKCS8PrivateKey(key)
		resp.Key = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
		pub = key.Public()
	}
	c, err := s.CA.IssueClient(pub, certs.Identity{Role: certs.RoleUser, ID: u.ID, Name: u.Username}, time.Now())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	resp.Cert, resp.CACert = string(c), string(s.CA.CAPEM)
	s.Log.Info("issued user certificate", "user", u.Username)
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request, u *db.User) {
	writeJSON(w, http.StatusOK, u)
}

// CloudInfo is one entry of GET /clouds.
type CloudInfo struct {
	Name          string `json:"name"`
	Driver        string `json:"driver"`
	Region        string `json:"region,omitempty"`
	InstanceType  string `json:"instance_type"`
	SecurityGroup string `json:"security_group"`
	Default       bool   `json:"default"`
}

func (s *Server) listClouds(w http.ResponseWriter, r *http.Request, u *db.User) {
	out := []CloudInfo{}
	for _, c := range s.Cfg.Clouds {
		out = append(out, CloudInfo{Name: c.Name, Driver: c.Driver, Region: c.Region, InstanceType: c.InstanceType,
			SecurityGroup: c.SecurityGroup, Default: c.Name == config.DefaultCloud})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) listImages(w http.ResponseWriter, r *http.Request, u *db.User) {
	out := []imagesel.Choice{}
	for _, c := range s.Cfg.Clouds {
		out = append(out, s.Choices[c.Name])
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) listApps(w http.ResponseWriter, r *http.Request, u *db.User) {
	apps, err := s.DB.Applications(r.Context(), u.ID)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, apps)
}

// validName accepts printable UTF-8 up to 64 bytes. Quotes and SQL
// keywords are fine: every query is parameterised.
func validName(n string) error {
	if n == "" || len(n) > 64 || !utf8.ValidString(n) {
		return errors.New("name must be 1 to 64 bytes of UTF-8")
	}
	for _, r := range n {
		if !unicode.IsPrint(r) {
			return errors.New("name contains control characters")
		}
	}
	return nil
}

func (s *Server) createApp(w http.ResponseWriter, r *http.Request, u *db.User) {
	var req struct {
		Name string `json:"name"`
	}
	if !decode(w, r, &req) {
		return
	}
	if err := validName(req.Name); err != nil {
		fail(w, http.StatusBadRequest, "application %v", err)
		return
	}
	a, err := s.DB.CreateApplication(r.Context(), u.ID, req.Name)
	if errors.Is(err, db.ErrExists) {
		fail(w, http.StatusConflict, "you already have an application named %q", req.Name)
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	s.Log.Info("application created", "user", u.Username, "app", a.ID)
	writeJSON(w, http.StatusCreated, a)
}

func pathID(w http.ResponseWriter, r *http.Request, name string) (int64, bool) {
	v := r.PathValue(name)
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id <= 0 {
		fail(w, http.StatusBadRequest, "%s id %q is not a positive number", name, v)
		return 0, false
	}
	return id, true
}

// app loads the user's application; another user's application is
// reported exactly like a missing one.
func (s *Server) app(w http.ResponseWriter, r *http.Request, u *db.User) (*db.Application, bool) {
	id, ok := pathID(w, r, "app")
	if !ok {
		return nil, false
	}
	a, err := s.DB.Application(r.Context(), u.ID, id)
	if errors.Is(err, db.ErrNotFound) {
		fail(w, http.StatusNotFound, "no application %d", id)
		return nil, false
	}
	if err != nil {
		s.internal(w, r, err)
		return nil, false
	}
	return a, true
}

func (s *Server) deleteApp(w http.ResponseWriter, r *http.Request, u *db.User) {
	a, ok := s.app(w, r, u)
	if !ok {
		return
	}
	svcs, err := s.DB.Services(r.Context(), u.ID, a.ID)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	// Terminate the VMs first: deleting the rows of running VMs would
	// leave them billing and unmanaged.
	for i := range svcs {
		if err := s.terminate(r.Context(), &svcs[i]); err != nil {
			fail(w, http.StatusBadGateway, "application not deleted: stopping service %d: %v", svcs[i].ID, err)
			return
		}
	}
	if err := s.DB.DeleteApplication(r.Context(), u.ID, a.ID); err != nil {
		s.internal(w, r, err)
		return
	}
	s.Log.Info("application deleted", "user", u.Username, "app", a.ID)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) listServices(w http.ResponseWriter, r *http.Request, u *db.User) {
	var appID int64
	if r.PathValue("app") != "" {
		a, ok := s.app(w, r, u)
		if !ok {
			return
		}
		appID = a.ID
	}
	l, err := s.DB.Services(r.Context(), u.ID, appID)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, l)
}

func (s *Server) startService(w http.ResponseWriter, r *http.Request, u *db.User) {
	a, ok := s.app(w, r, u)
	if !ok {
		return
	}
	var req struct {
		Type  string `json:"type"`
		Cloud string `json:"cloud,omitempty"`
	}
	if !decode(w, r, &req) {
		return
	}
	if !contains(ServiceTypes, req.Type) {
		fail(w, http.StatusBadRequest, "unknown service type %q (known: %s)", req.Type, strings.Join(ServiceTypes, ", "))
		return
	}
	if req.Cloud == "" {
		req.Cloud = config.DefaultCloud
	}
	cl, ok := s.Cfg.Cloud(req.Cloud)
	if !ok {
		fail(w, http.StatusBadRequest, "unknown cloud %q (configured: %s)", req.Cloud, strings.Join(s.Cfg.CloudNames(), ", "))
		return
	}
	ctx := r.Context()
	svc, err := s.DB.CreateService(ctx, a.ID, req.Type, cl.Name)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	inst, err := s.startManager(ctx, a, svc, cl)
	if err != nil {
		s.Log.Error("starting manager failed", "service", svc.ID, "cloud", cl.Name, "err", err)
		if serr := s.DB.SetServiceState(ctx, svc.ID, db.StateError, err.Error()); serr != nil {
			s.Log.Error("recording failure", "err", serr)
		}
		fail(w, http.StatusBadGateway, "starting the manager on cloud %s failed: %v", cl.Name, err)
		return
	}
	if err := s.DB.SetServiceState(ctx, svc.ID, db.StateRunning, ""); err != nil {
		s.internal(w, r, err)
		return
	}
	s.Log.Info("service started", "user", u.Username, "app", a.ID, "service", svc.ID, "cloud", cl.Name, "instance", inst.InstanceID, "image", inst.ImageID)
	out, err := s.DB.Service(ctx, u.ID, svc.ID)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, out)
}

func contains(l []string, v string) bool {
	for _, x := range l {
		if x == v {
			return true
		}
	}
	return false
}

// startManager issues the manager's certificate, renders its user-data
// and starts the VM, recording it in the database.
func (s *Server) startManager(ctx context.Context, a *db.Application, svc *db.Service, cl *config.Cloud) (*db.Instance, error) {
	ch, ok := s.Choices[cl.Name]
	if !ok || ch.ImageID == "" {
		return nil, fmt.Errorf("no image resolved for cloud %s", cl.Name)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	cert, err := s.CA.IssueClient(key.Public(), certs.Identity{Role: certs.RoleManager, ID: svc.ID, Name: fmt.Sprintf("manager-%d", svc.ID)}, time.Now())
	if err != nil {
		return nil, err
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	du := s.Cfg.DirectorURL.String()
	ud, err := userdata.Render(userdata.Manager{
		DirectorURL: du, Bootstrap: du, Type: svc.Type, AppID: a.ID, ServiceID: svc.ID, Cloud: cl.Name,
		CACert: s.CA.CAPEM, Cert: cert, Key: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
	})
	if err != nil {
		return nil, err
	}
	c := s.Clouds[cl.Name]
	cctx, cancel := context.WithTimeout(ctx, s.CloudTimeout)
	defer cancel()
	vm, err := c.Start(cctx, compute.StartRequest{
		Name: fmt.Sprintf("conpaas-%s-manager-%d", svc.Type, svc.ID), ImageID: ch.ImageID, InstanceType: cl.InstanceType,
		SecurityGroup: cl.SecurityGroup, KeyName: cl.KeyName, UserData: ud,
		Tags: map[string]string{"conpaas:application": strconv.FormatInt(a.ID, 10), "conpaas:service": strconv.FormatInt(svc.ID, 10), "conpaas:role": "manager"},
	})
	if err != nil {
		return nil, err
	}
	in := &db.Instance{ServiceID: svc.ID, Role: "manager", Cloud: cl.Name, InstanceID: vm.ID, ImageID: ch.ImageID,
		InstanceType: cl.InstanceType, State: vm.State}
	if err := s.DB.AddInstance(context.WithoutCancel(ctx), in); err != nil {
		// The VM exists but is not recorded: terminate it rather than leak it.
		if terr := c.Stop(context.WithoutCancel(ctx), vm.ID); terr != nil {
			return nil, fmt.Errorf("%w; and terminating the unrecorded VM %s failed: %v", err, vm.ID, terr)
		}
		return nil, err
	}
	return in, nil
}

// terminate stops a service's manager VM (if any) and marks it stopped.
func (s *Server) terminate(ctx context.Context, svc *db.Service) error {
	if m := svc.Manager; m != nil && m.Terminated == "" {
		c, ok := s.Clouds[m.Cloud]
		if !ok {
			return fmt.Errorf("cloud %s of instance %s is no longer configured", m.Cloud, m.InstanceID)
		}
		cctx, cancel := context.WithTimeout(ctx, s.CloudTimeout)
		defer cancel()
		if err := c.Stop(cctx, m.InstanceID); err != nil && !errors.Is(err, compute.ErrNotFound) {
			return err
		}
		if err := s.DB.SetInstanceState(ctx, m.ID, "terminated"); err != nil {
			return err
		}
	}
	if svc.State != db.StateStopped {
		return s.DB.SetServiceState(ctx, svc.ID, db.StateStopped, "")
	}
	return nil
}

func (s *Server) service(w http.ResponseWriter, r *http.Request, u *db.User) (*db.Service, bool) {
	id, ok := pathID(w, r, "svc")
	if !ok {
		return nil, false
	}
	svc, err := s.DB.Service(r.Context(), u.ID, id)
	if errors.Is(err, db.ErrNotFound) {
		fail(w, http.StatusNotFound, "no service %d", id)
		return nil, false
	}
	if err != nil {
		s.internal(w, r, err)
		return nil, false
	}
	return svc, true
}

// ServiceStatus is GET /services/{id}: the stored service plus the VM's
// state as the cloud reports it now.
type ServiceStatus struct {
	db.Service
	VMState   string `json:"vm_state,omitempty"`
	VMAddress string `json:"vm_address,omitempty"`
	VMError   string `json:"vm_error,omitempty"`
}

func (s *Server) serviceStatus(w http.ResponseWriter, r *http.Request, u *db.User) {
	svc, ok := s.service(w, r, u)
	if !ok {
		return
	}
	st := ServiceStatus{Service: *svc}
	if m := svc.Manager; m != nil && m.Terminated == "" {
		if c, ok := s.Clouds[m.Cloud]; ok {
			cctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
			vm, err := c.Describe(cctx, m.InstanceID)
			cancel()
			if err != nil {
				st.VMError = err.Error()
			} else {
				st.VMState, st.VMAddress = vm.State, vm.Address
				if vm.State != m.State {
					s.DB.SetInstanceState(r.Context(), m.ID, vm.State)
				}
			}
		}
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) stopService(w http.ResponseWriter, r *http.Request, u *db.User) {
	svc, ok := s.service(w, r, u)
	if !ok {
		return
	}
	if err := s.terminate(r.Context(), svc); err != nil {
		fail(w, http.StatusBadGateway, "stopping service %d: %v", svc.ID, err)
		return
	}
	s.Log.Info("service stopped", "user", u.Username, "service", svc.ID)
	out, err := s.DB.Service(r.Context(), u.ID, svc.ID)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}
