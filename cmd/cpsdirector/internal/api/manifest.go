package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/conpaas/cps/cmd/cpsdirector/internal/db"
)

// Manifests (manifest.py): an application described in JSON, {"Application":
// NAME, "Services": [{"Type": ..., "ServiceName": ..., "Cloud": ...}]},
// created, started and its services added and started through the
// application manager, as the original's MGeneral did for every type.

type manifestService struct {
	Type        string `json:"Type"`
	ServiceName string `json:"ServiceName"`
	Cloud       string `json:"Cloud"`
}

type manifest struct {
	Application string            `json:"Application"`
	Services    []manifestService `json:"Services"`
}

func (s *Server) uploadManifest(w http.ResponseWriter, r *http.Request, u *db.User) {
	text, _ := value(r, "manifest")
	if text == "" {
		respondJSON(w, errObj(`"manifest" is a required argument`))
		return
	}
	var m manifest
	valid := json.Unmarshal([]byte(text), &m) == nil
	for _, sv := range m.Services {
		valid = valid && sv.Type != "" && utf8.RuneCountInString(sv.ServiceName) <= maxName
	}
	if !valid {
		respondJSON(w, errObj("The uploded manifest is not valid"))
		return
	}
	if m.Application == "" {
		respondJSON(w, errObj("Application is not defined"))
		return
	}
	// Room for the " (98)" a taken name gets.
	if !fits(w, "Application", m.Application, maxName-5) {
		return
	}
	ctx := r.Context()
	var a *db.Application
	var err error
	for i := 1; i < 99; i++ {
		name := m.Application
		if i > 1 {
			name = fmt.Sprintf("%s (%d)", m.Application, i)
		}
		a, err = s.DB.CreateApplication(ctx, u.UID, name)
		if !errors.Is(err, db.ErrExists) {
			break
		}
	}
	if errors.Is(err, db.ErrExists) {
		respondJSON(w, errObj("Application cannot be created"))
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if len(m.Services) == 0 {
		respondJSON(w, Obj{})
		return
	}
	cloud, _ := value(r, "cloud")
	if cloud == "" || cloud == "None" {
		cloud = "default"
	}
	if _, ok := value(r, "thread"); ok {
		s.Nodes.Go(func(ctx context.Context) {
			if msg := s.runManifest(ctx, u, a.AID, cloud, m); msg != "" {
				s.Log.Error("manifest failed", "app", a.AID, "err", msg)
			}
		})
		respondJSON(w, Obj{{"aid", a.AID}})
		return
	}
	if msg := s.runManifest(context.WithoutCancel(ctx), u, a.AID, cloud, m); msg != "" {
		respondJSON(w, errObj(msg))
		return
	}
	respondJSON(w, Obj{{"aid", a.AID}})
}

// runManifest starts the application and its services; "" on success.
func (s *Server) runManifest(ctx context.Context, u *db.User, aid int64, cloud string, m manifest) string {
	fail := func(msg string) string {
		s.DB.SetAppStatus(ctx, aid, db.AppError)
		return msg
	}
	res, err := s.start(ctx, u, aid, cloud, true)
	if err != nil {
		return fail(err.Error())
	}
	if e, ok := res.Get("error"); ok {
		return fail(fmt.Sprint(e))
	}
	s.DB.SetAppStatus(ctx, aid, db.AppAdapting)
	for _, sv := range m.Services {
		known := false
		for _, t := range ServiceTypes {
			known = known || t == sv.Type
		}
		if !known {
			return fail(fmt.Sprintf("Service %s does not exists", sv.Type))
		}
		added, err := s.add(ctx, u, sv.Type, strconv.FormatInt(aid, 10))
		if err != nil {
			return fail(err.Error())
		}
		if e, ok := added.Get("error"); ok {
			return fail(fmt.Sprint(e))
		}
		svc, _ := added.Get("service")
		sid, _ := svc.(Obj).Get("sid")
		if sv.ServiceName != "" {
			if rec, err := s.DB.Service(ctx, u.UID, aid, sid.(int64)); err == nil {
				s.DB.RenameService(ctx, rec.RecID, sv.ServiceName)
			}
		}
		c := cloud
		if sv.Cloud != "" {
			c = sv.Cloud
		}
		_, eobj, err := s.callManager(ctx, u, strconv.FormatInt(aid, 10), 0, "start_service", true, map[string]any{"cloud": c, "service_id": sid})
		if err != nil {
			return fail(err.Error())
		}
		if eobj != nil {
			e, _ := eobj.Get("error")
			return fail(fmt.Sprint(e))
		}
	}
	s.DB.SetAppStatus(ctx, aid, db.AppRunning)
	return ""
}

// downloadManifest is /download_manifest/<aid>: the manifest of a running
// application, from the manager's view of its services.
func (s *Server) downloadManifest(w http.ResponseWriter, r *http.Request, u *db.User) {
	aidText := r.PathValue("aid")
	aid, err := strconv.ParseInt(aidText, 10, 64)
	var a *db.Application
	if err == nil {
		a, err = s.DB.Application(r.Context(), u.UID, aid)
	}
	if err != nil {
		respondJSON(w, errObj(fmt.Sprintf("The appid %s does not exist", aidText)))
		return
	}
	svcs, err := s.DB.Services(r.Context(), u.UID, aid)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	list := []any{}
	for _, sv := range svcs {
		o := Obj{{"Type", nullable(sv.Type)}, {"ServiceName", nullable(sv.Name)}, {"Cloud", nullable(sv.Cloud)}}
		if res, eobj, err := s.callManager(r.Context(), u, aidText, sv.SID, "get_service_info", false, nil); err == nil && eobj == nil {
			var info struct{ State string }
			if json.Unmarshal(res, &info) == nil && info.State == "RUNNING" {
				o = append(o, KV{"Start", int64(1)})
			}
		}
		if res, eobj, err := s.callManager(r.Context(), u, aidText, sv.SID, "list_nodes", false, nil); err == nil && eobj == nil {
			var roles map[string][]any
			if json.Unmarshal(res, &roles) == nil {
				counts := map[string]any{}
				for role, l := range roles {
					counts[role] = int64(len(l))
				}
				o = append(o, KV{"StartupInstances", counts})
			}
		}
		list = append(list, o)
	}
	respond(w, Obj{{"Services", list}, {"Application", nullable(a.Name)}})
}
