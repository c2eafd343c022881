package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/conpaas/cps/cmd/cpsdirector/internal/db"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/rpc"
)

// appDict is the original's Application.to_dict: manager, vmid and cloud
// of its manager VM once that is up ("iaas" names the default cloud).
func appDict(a *db.Application) Obj {
	o := Obj{{"aid", a.AID}, {"name", nullable(a.Name)}, {"uid", a.UserID}, {"status", a.Status},
		{"manager", nil}, {"vmid", nil}, {"cloud", nil}}
	if m := a.Manager; m != nil {
		o[4].V, o[5].V, o[6].V = m.IP, m.VMID, m.Cloud
	}
	return o
}

func (s *Server) createApp(w http.ResponseWriter, r *http.Request, u *db.User) {
	name, _ := value(r, "name")
	if name == "" {
		respondJSON(w, errObj(`"name" is a required argument`))
		return
	}
	if !fits(w, "name", name, maxName) {
		return
	}
	a, err := s.DB.CreateApplication(r.Context(), u.UID, name)
	if errors.Is(err, db.ErrExists) {
		respondJSON(w, errObj(fmt.Sprintf(`Application name "%s" is already taken`, name)))
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	s.Log.Info("application created", "user", u.Username, "app", a.AID)
	respondJSON(w, appDict(a))
}

func (s *Server) listApps(w http.ResponseWriter, r *http.Request, u *db.User) {
	apps, err := s.DB.Applications(r.Context(), u.UID)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	out := make([]Obj, len(apps))
	for i := range apps {
		out[i] = appDict(&apps[i])
	}
	respond(w, out)
}

// startApp is /startapp/<aid>[/<cloud>] (the original's _startapp): the
// first hour of the manager VM is debited atomically, so concurrent starts
// cannot overdraw; the VM is made and waited for in the background, the
// application going PROLOGUE, then RUNNING (or ERROR).
func (s *Server) startApp(w http.ResponseWriter, r *http.Request, u *db.User) {
	aid, ok := pathInt(w, r, "aid")
	if !ok {
		return
	}
	res, err := s.start(r.Context(), u, aid, r.PathValue("cloud"), false)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	respondJSON(w, res)
}

// start is _startapp; with wait it returns once the manager answers.
func (s *Server) start(ctx context.Context, u *db.User, aid int64, cloudName string, wait bool) (Obj, error) {
	a, err := s.DB.Application(ctx, u.UID, aid)
	if errors.Is(err, db.ErrNotFound) {
		return errObj("Application not found"), nil
	}
	if err != nil {
		return nil, err
	}
	if a.Status != db.AppInit && a.Status != db.AppStopped && !wait {
		return errObj("Application already started"), nil
	}
	cl, err := s.Nodes.CloudFor(cloudName)
	if err != nil {
		return errObj(err.Error()), nil
	}
	ok, err := s.DB.Debit(ctx, u.UID, 1)
	if err != nil {
		return nil, err
	}
	if !ok {
		return errObj("Insufficient credits"), nil
	}
	from := []string{db.AppInit, db.AppStopped}
	if wait {
		from = nil // the manifest path restarts whatever it made
	}
	moved, err := s.DB.SetAppStatus(ctx, aid, db.AppPrologue, from...)
	if err != nil || !moved {
		if rerr := s.DB.Refund(context.WithoutCancel(ctx), u.UID, 1); rerr != nil {
			s.Log.Error("refunding credit", "user", u.UID, "err", rerr)
		}
		if err != nil {
			return nil, err
		}
		return errObj("Application already started"), nil
	}
	s.Log.Info("application starting", "user", u.Username, "app", aid, "cloud", cl.Name)
	if err := s.Nodes.StartManager(u, aid, cl, wait); err != nil {
		return errObj("Error upon application starting: " + err.Error()), nil
	}
	return Obj{}, nil
}

// stopApp is /stopapp and /deleteapp (_deleteapp): VMs terminated,
// services forgotten, the application STOPPED or deleted. The original
// answered with simplejson here, not jsonify.
func (s *Server) stopApp(del bool) func(http.ResponseWriter, *http.Request, *db.User) {
	return func(w http.ResponseWriter, r *http.Request, u *db.User) {
		aid, ok := pathInt(w, r, "aid")
		if !ok {
			return
		}
		if _, err := s.DB.Application(r.Context(), u.UID, aid); errors.Is(err, db.ErrNotFound) {
			respond(w, errObj("Application not found"))
			return
		} else if err != nil {
			s.internal(w, r, err)
			return
		}
		if err := s.Nodes.StopApp(context.WithoutCancel(r.Context()), aid, del); err != nil {
			s.internal(w, r, err)
			return
		}
		s.Log.Info("application stopped", "user", u.Username, "app", aid, "deleted", del)
		respond(w, Obj{})
	}
}

func (s *Server) renameApp(w http.ResponseWriter, r *http.Request, u *db.User) {
	aid, ok := pathInt(w, r, "aid")
	if !ok {
		return
	}
	name, _ := value(r, "name")
	if name == "" {
		respondJSON(w, errObj(`"name" is a required argument`))
		return
	}
	if !fits(w, "name", name, maxName) {
		return
	}
	switch err := s.DB.RenameApplication(r.Context(), u.UID, aid, name); {
	case errors.Is(err, db.ErrNotFound):
		respondJSON(w, errObj("Application not found"))
	case errors.Is(err, db.ErrExists):
		respondJSON(w, errObj(fmt.Sprintf(`Application name "%s" is already taken`, name)))
	case err != nil:
		s.internal(w, r, err)
	default:
		respondJSON(w, Obj{})
	}
}

// callManager is the original's callmanager: JSON-RPC to the application's
// manager, whose {"error": ...} answers come back as they are.
func (s *Server) callManager(ctx context.Context, u *db.User, aidText string, sid int64, method string, post bool, params any) (json.RawMessage, Obj, error) {
	aid, err := strconv.ParseInt(aidText, 10, 64)
	var a *db.Application
	if err == nil {
		a, err = s.DB.Application(ctx, u.UID, aid)
	}
	if err != nil {
		if errors.Is(err, db.ErrNotFound) || errors.Is(err, strconv.ErrSyntax) || errors.Is(err, strconv.ErrRange) {
			return nil, errObj(fmt.Sprintf("Application %s not found.", aidText)), nil
		}
		return nil, nil, err
	}
	if a.Manager == nil {
		return nil, errObj(fmt.Sprintf("Application %s has not started. Try to start it first.", aidText)), nil
	}
	res, err := s.RPC.Call(ctx, a.Manager.IP, s.Cfg.ManagerPort, post, method, sid, params)
	var merr *rpc.Error
	if errors.As(err, &merr) {
		return nil, errObj(merr.Msg), nil
	}
	if err != nil {
		s.Log.Error("calling the application manager", "app", a.AID, "method", method, "err", err)
		return nil, errObj(fmt.Sprintf("Call to method %s on the manager of application %d failed", method, a.AID)), nil
	}
	return res, nil, nil
}

// serviceDict is Service.to_dict: the row and its application.
func serviceDict(sv *db.Service, a *db.Application) Obj {
	return Obj{
		{"service", Obj{{"rec_id", sv.RecID}, {"sid", sv.SID}, {"name", nullable(sv.Name)}, {"type", nullable(sv.Type)},
			{"state", nullable(sv.State)}, {"created", sv.Created.ISO()}, {"cloud", nullable(sv.Cloud)},
			{"subnet", nullable(sv.Subnet)}, {"application_id", sv.ApplicationID}}},
		{"application", appDict(a)},
	}
}

func (s *Server) availableServices(w http.ResponseWriter, r *http.Request) {
	respond(w, ServiceTypes)
}

// addService is /add/<type> (_add): the application manager creates the
// service, the director records it.
func (s *Server) addService(w http.ResponseWriter, r *http.Request, u *db.User) {
	typ := r.PathValue("type")
	res, err := s.add(r.Context(), u, typ, func() string { v, _ := value(r, "appid"); return v }())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	respondJSON(w, res)
}

func (s *Server) add(ctx context.Context, u *db.User, typ, appid string) (Obj, error) {
	if appid == "" {
		a, err := s.DB.DefaultApplication(ctx, u.UID)
		if errors.Is(err, db.ErrNotFound) {
			return errObj("No existing applications"), nil
		}
		if err != nil {
			return nil, err
		}
		appid = strconv.FormatInt(a.AID, 10)
	}
	known := false
	for _, t := range ServiceTypes {
		known = known || t == typ
	}
	if !known {
		return errObj(fmt.Sprintf("Unknown service type '%s'", typ)), nil
	}
	res, eobj, err := s.callManager(ctx, u, appid, 0, "add_service", true, map[string]any{"service_type": typ})
	if err != nil || eobj != nil {
		return eobj, err
	}
	var out struct {
		ServiceID *int64 `json:"service_id"`
	}
	if json.Unmarshal(res, &out) != nil || out.ServiceID == nil {
		var any Obj
		if v, err := decodeObj(res); err == nil {
			any = v
		}
		return any, nil
	}
	aid, _ := strconv.ParseInt(appid, 10, 64)
	a, err := s.DB.Application(ctx, u.UID, aid)
	if err != nil {
		return nil, err
	}
	sv := &db.Service{SID: *out.ServiceID, ApplicationID: aid}
	sv.Name.String, sv.Name.Valid = "New "+typ+" service", true
	sv.Type.String, sv.Type.Valid = typ, true
	sv.State.String, sv.State.Valid = "INIT", true
	if err := s.DB.AddService(ctx, sv); err != nil {
		return nil, err
	}
	s.Log.Info("service added", "user", u.Username, "app", aid, "sid", sv.SID, "type", typ)
	return serviceDict(sv, a), nil
}

// decodeObj turns a manager's JSON object into an Obj (keys sorted).
func decodeObj(b json.RawMessage) (Obj, error) {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	o := Obj{}
	for k, v := range m {
		o = append(o, KV{k, fromJSON(v)})
	}
	return o, nil
}

func (s *Server) ids(r *http.Request) (int64, int64, bool) {
	a, _ := value(r, "app_id")
	sv, _ := value(r, "service_id")
	aid, err1 := strconv.ParseInt(a, 10, 64)
	sid, err2 := strconv.ParseInt(sv, 10, 64)
	return aid, sid, err1 == nil && err2 == nil
}

func (s *Server) renameService(w http.ResponseWriter, r *http.Request, u *db.User) {
	aid, sid, ok := s.ids(r)
	if !ok {
		respondJSON(w, errObj("Bad specification of application or service IDs"))
		return
	}
	name, _ := value(r, "name")
	if name == "" {
		respondJSON(w, errObj(`"name" is a required argument`))
		return
	}
	if !fits(w, "name", name, maxName) {
		return
	}
	sv, err := s.DB.Service(r.Context(), u.UID, aid, sid)
	if errors.Is(err, db.ErrNotFound) {
		respondJSON(w, errObj("Invalid service_id"))
		return
	}
	if err == nil {
		err = s.DB.RenameService(r.Context(), sv.RecID, name)
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	respondJSON(w, Obj{})
}

func (s *Server) removeService(w http.ResponseWriter, r *http.Request, u *db.User) {
	aid, sid, ok := s.ids(r)
	if !ok {
		respondJSON(w, errObj("Bad specification of application or service IDs"))
		return
	}
	_, eobj, err := s.callManager(r.Context(), u, strconv.FormatInt(aid, 10), 0, "remove_service", true, map[string]any{"service_id": sid})
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if eobj != nil {
		respondJSON(w, eobj)
		return
	}
	sv, err := s.DB.Service(r.Context(), u.UID, aid, sid)
	if errors.Is(err, db.ErrNotFound) {
		respondJSON(w, errObj("Invalid service_id"))
		return
	}
	if err == nil {
		err = s.DB.DeleteService(r.Context(), sv.RecID)
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	respondJSON(w, Obj{})
}

// listServices is /list and /list/<aid>. The original's /list/<aid> listed
// any user's application; cps lists only the caller's.
func (s *Server) listServices(w http.ResponseWriter, r *http.Request, u *db.User) {
	var aid int64
	if r.PathValue("aid") != "" {
		var ok bool
		if aid, ok = pathInt(w, r, "aid"); !ok {
			return
		}
		if aid == 0 {
			respond(w, []Obj{})
			return
		}
	}
	svcs, err := s.DB.Services(r.Context(), u.UID, aid)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	apps := map[int64]*db.Application{}
	out := make([]Obj, 0, len(svcs))
	for i := range svcs {
		a := apps[svcs[i].ApplicationID]
		if a == nil {
			if a, err = s.DB.Application(r.Context(), u.UID, svcs[i].ApplicationID); err != nil {
				s.internal(w, r, err)
				return
			}
			apps[a.AID] = a
		}
		out = append(out, serviceDict(&svcs[i], a))
	}
	respond(w, out)
}

func (s *Server) availableClouds(w http.ResponseWriter, r *http.Request) {
	l := []string{"default"}
	l = append(l, s.Cfg.OtherClouds...)
	respond(w, l)
}

// resourceDict is Resource.to_dict with the original's columns; "iaas"
// shows as "default", as the original's /list_resources did.
func resourceDict(r *db.Resource) Obj {
	cloud := r.Cloud
	if cloud == "iaas" {
		cloud = "default"
	}
	return Obj{{"rid", r.RID}, {"vmid", r.VMID}, {"app_id", r.AppID}, {"service_id", r.ServiceID}, {"charged", r.Charged},
		{"ip", r.IP}, {"role", r.Role}, {"cloud", cloud}, {"created", r.Created.Str()}, {"app_name", r.AppName}}
}

func (s *Server) listResources(w http.ResponseWriter, r *http.Request, u *db.User) {
	rs, err := s.DB.UserResources(r.Context(), u.UID)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	out := make([]Obj, len(rs))
	for i := range rs {
		out[i] = resourceDict(&rs[i])
	}
	respond(w, out)
}
