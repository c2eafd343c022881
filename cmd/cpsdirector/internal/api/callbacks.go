package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/conpaas/cps/cmd/cpsdirector/internal/certs"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/config"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/db"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/nodes"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/userdata"
)

// The manager callbacks of cloud.py. A manager authenticates with the
// certificate the director put in its context (role manager, UID its user,
// serviceLocator its application); the application is its own, whatever
// the form says (the original trusted the app_id field).

func (s *Server) credit(w http.ResponseWriter, r *http.Request, u *db.User, a *db.Application, _ *certs.Identity) {
	respond(w, Obj{{"credit", u.Credit}})
}

// nodeInfo is one entry of nodes_info (get_sninfo).
type nodeInfo struct {
	Cloud    string
	Role     string
	InstType string
	Volumes  []map[string]any
}

func parseNodesInfo(s string) ([]nodeInfo, error) {
	v, err := parsePyLiteral(s)
	if err != nil {
		return nil, err
	}
	l, ok := v.([]any)
	if !ok {
		return nil, errors.New("nodes_info is not a list")
	}
	var out []nodeInfo
	for _, e := range l {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, errors.New("nodes_info entries must be dicts")
		}
		ni := nodeInfo{Role: "node"}
		ni.Cloud, _ = m["cloud"].(string)
		if r, ok := m["role"].(string); ok {
			ni.Role = r
		}
		ni.InstType, _ = m["inst_type"].(string)
		if vols, ok := m["volumes"].([]any); ok {
			for _, vv := range vols {
				if vm, ok := vv.(map[string]any); ok {
					ni.Volumes = append(ni.Volumes, vm)
				}
			}
		}
		out = append(out, ni)
	}
	return out, nil
}

// createNodes is /create_nodes: agent VMs for a service. Credit for the
// first hour of every VM is debited at once (all or none); the answer
// lists the VMs whose agent came up, as ServiceNode.to_dict, after the
// wait the original did.
func (s *Server) createNodes(w http.ResponseWriter, r *http.Request, u *db.User, a *db.Application, id *certs.Identity) {
	if v, ok := value(r, "app_id"); ok && v != strconv.FormatInt(a.AID, 10) {
		respondJSON(w, errObj(fmt.Sprintf("a manager of application %d cannot create nodes for application %s", a.AID, v)))
		return
	}
	sidText, _ := value(r, "service_id")
	sid, err := strconv.ParseInt(sidText, 10, 64)
	if err != nil {
		respondJSON(w, errObj("service_id must be an integer"))
		return
	}
	stype, _ := value(r, "service_type")
	managerIP, _ := value(r, "manager_ip")
	script, _ := value(r, "startup_script")
	niText, _ := value(r, "nodes_info")
	infos, err := parseNodesInfo(niText)
	if err != nil {
		respondJSON(w, errObj("nodes_info: "+err.Error()))
		return
	}
	ctxRepl := map[string]string{}
	if c, ok := value(r, "context"); ok && c != "" {
		v, err := parsePyLiteral(c)
		m, isMap := v.(map[string]any)
		if err != nil || !isMap {
			respondJSON(w, errObj("context must be a dict"))
			return
		}
		for k, x := range m {
			ctxRepl[k] = fmt.Sprint(x)
		}
	}
	if len(infos) == 0 {
		respond(w, []Obj{})
		return
	}
	clouds := make([]*config.Cloud, len(infos))
	for i, ni := range infos {
		cl, err := s.Nodes.CloudFor(ni.Cloud)
		if err != nil {
			respondJSON(w, errObj(err.Error()))
			return
		}
		clouds[i] = cl
	}
	// What every agent's context would refuse is refused here, before
	// credit is taken and a key generated per node (the answer is the one
	// the route gave when no agent came up): a request listing 300,000
	// nodes used to start 300,000 key generations that all failed.
	for _, cl := range clouds {
		if err := (userdata.Agent{CloudType: cl.Driver, DirectorURL: s.Cfg.DirectorURL.String(), ServiceID: strconv.FormatInt(sid, 10),
			ServiceType: stype, ManagerIP: managerIP, Context: ctxRepl}).CheckFields(); err != nil {
			s.Log.Error("create_nodes refused", "app", a.AID, "count", len(infos), "err", err)
			respond(w, []Obj{})
			return
		}
	}
	n := int64(len(infos))
	if ok, err := s.DB.Debit(r.Context(), u.UID, n); err != nil {
		s.internal(w, r, err)
		return
	} else if !ok {
		respondJSON(w, errObj("Insufficient credits"))
		return
	}
	s.Log.Info("create_nodes", "user", u.UID, "app", a.AID, "service", sid, "type", stype, "count", n)
	// The work outlives a dropped connection: the VMs are recorded and
	// either handed over or removed.
	ctx := context.WithoutCancel(r.Context())
	out := make([]Obj, len(infos))
	var wg sync.WaitGroup
	for i := range infos {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = s.createAgent(ctx, u, a, sid, stype, managerIP, ctxRepl, script, infos[i], clouds[i])
		}()
	}
	wg.Wait()
	ready := []Obj{}
	for _, o := range out {
		if o != nil {
			ready = append(ready, o)
		}
	}
	if len(ready) < len(infos) {
		s.Log.Warn("some agents did not start", "app", a.AID, "asked", len(infos), "ready", len(ready))
	}
	respond(w, ready)
}

// createAgent makes one agent VM, waits for it and attaches its volumes;
// nil when it did not come up (its credit refunded).
func (s *Server) createAgent(ctx context.Context, u *db.User, a *db.Application, sid int64, stype, managerIP string, repl map[string]string, script string, ni nodeInfo, cl *config.Cloud) Obj {
	spec := nodes.Spec{Role: certs.RoleAgent, User: u, AppID: a.AID, ServiceID: sid, Cloud: cl, InstanceType: ni.InstType,
		Render: func(t userdata.Templates) ([]byte, error) {
			b, err := s.CA.Issue(certs.Name{UID: strconv.FormatInt(u.UID, 10), ServiceLocator: strconv.FormatInt(a.AID, 10),
				Role: certs.RoleAgent, CN: "ConPaaS", O: "Contrail", Email: "info@conpaas.eu"}, 0, time.Now())
			if err != nil {
				return nil, err
			}
			return userdata.Agent{CloudType: cl.Driver, DirectorURL: s.Cfg.DirectorURL.String(), DeploymentName: s.Cfg.DeploymentName,
				UserID: u.UID, AppID: a.AID, ServiceID: strconv.FormatInt(sid, 10), ServiceType: stype, ManagerIP: managerIP,
				Context: repl, StartupScript: script, Cert: b.Cert, Key: b.Key, CA: b.CACert}.Render(t)
		}}
	res, err := s.Nodes.Create(ctx, spec)
	if err != nil {
		s.Log.Error("creating an agent", "app", a.AID, "err", err)
		if rerr := s.DB.Refund(ctx, u.UID, 1); rerr != nil {
			s.Log.Error("refunding credit", "user", u.UID, "err", rerr)
		}
		return nil
	}
	if err := s.Nodes.WaitReady(ctx, res); err != nil {
		return nil
	}
	vols := []any{}
	for _, v := range ni.Volumes {
		vol, err := s.agentVolume(ctx, a, cl, res, v)
		if err != nil {
			s.Log.Error("creating an agent's volume", "vm", res.VMID, "err", err)
			continue
		}
		vols = append(vols, vol)
	}
	return nodeDict(res, ni.Role, vols)
}

// nodeDict is ServiceNode.to_dict.
func nodeDict(r *db.Resource, role string, vols []any) Obj {
	return Obj{{"id", r.Cloud + r.VMID}, {"vmid", r.VMID}, {"ip", r.IP}, {"private_ip", r.PrivateIP}, {"cloud_name", r.Cloud},
		{"weight_backend", int64(100)}, {"role", role}, {"volumes", vols}}
}

var pyFormat = regexp.MustCompile(`%\(([a-z_]+)\)s`)

// agentVolume makes and attaches a volume of a node (nodes_info
// "volumes"): vol_size in MB, rounded up to GiB; vol_name may use
// %(vm_id)s and the other fields.
func (s *Server) agentVolume(ctx context.Context, a *db.Application, cl *config.Cloud, r *db.Resource, v map[string]any) (Obj, error) {
	v["vm_id"] = r.VMID
	name, _ := v["vol_name"].(string)
	name = pyFormat.ReplaceAllStringFunc(name, func(m string) string { return fmt.Sprint(v[pyFormat.FindStringSubmatch(m)[1]]) })
	mb, _ := v["vol_size"].(int64)
	dev, _ := v["dev_name"].(string)
	volID, err := s.makeVolume(ctx, a, cl, mb, name, r.VMID)
	if err != nil {
		return nil, err
	}
	if err := s.Nodes.Clouds[cl.Name].AttachVolume(ctx, volID, r.VMID, devicePath(cl, dev)); err != nil {
		return nil, err
	}
	var vcloud any
	if c, ok := v["cloud"].(string); ok {
		vcloud = c
	}
	return Obj{{"vol_name", name}, {"vol_size", mb}, {"vol_id", volID}, {"vm_id", r.VMID}, {"dev_name", dev}, {"cloud", vcloud}}, nil
}

// devicePath: the managers name devices bare ("sdb"); the original's EC2
// driver passed that on, its OpenStack driver prefixed /dev/.
func devicePath(cl *config.Cloud, dev string) string {
	if cl.Driver == config.DriverEC2 && !strings.HasPrefix(dev, "/dev/") {
		return "/dev/" + dev
	}
	return dev
}

func (s *Server) makeVolume(ctx context.Context, a *db.Application, cl *config.Cloud, sizeMB int64, name, vm string) (string, error) {
	if sizeMB <= 0 || sizeMB > 16<<20 {
		return "", fmt.Errorf("volume size %d MB is out of range", sizeMB)
	}
	gib := int((sizeMB + 1023) / 1024)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	id, err := s.Nodes.Clouds[cl.Name].CreateVolume(cctx, gib, name, vm)
	if err != nil {
		if id != "" {
			s.Nodes.Clouds[cl.Name].DeleteVolume(context.WithoutCancel(ctx), id)
		}
		return "", err
	}
	if err := s.DB.AddVolume(ctx, &db.Volume{VolumeID: id, AppID: a.AID, Cloud: cl.Name, VMID: vm}); err != nil {
		return "", err
	}
	return id, nil
}

// removeNodes is /remove_nodes: nodes is the JSON list of ServiceNode
// dicts. Only VMs of the manager's own application are touched (the
// original terminated any vmid it was given).
func (s *Server) removeNodes(w http.ResponseWriter, r *http.Request, u *db.User, a *db.Application, _ *certs.Identity) {
	text, _ := value(r, "nodes")
	var list []map[string]any
	if err := json.Unmarshal([]byte(text), &list); err != nil {
		respondJSON(w, errObj("nodes must be a JSON list of nodes"))
		return
	}
	var rs []db.Resource
	for _, n := range list {
		vmid := fmt.Sprint(n["vmid"])
		res, err := s.DB.ResourceByVMID(r.Context(), vmid)
		if errors.Is(err, db.ErrNotFound) {
			continue // already gone
		}
		if err != nil {
			s.internal(w, r, err)
			return
		}
		if res.AppID != a.AID || res.Role == certs.RoleManager {
			respondJSON(w, errObj(fmt.Sprintf("VM %s is not an agent of application %d", vmid, a.AID)))
			return
		}
		rs = append(rs, *res)
	}
	s.Log.Info("remove_nodes", "app", a.AID, "count", len(rs))
	if err := s.Nodes.Remove(context.WithoutCancel(r.Context()), rs); err != nil {
		s.Log.Warn("some VMs are still being terminated", "app", a.AID, "err", err)
	}
	respond(w, Obj{})
}

// volumeCloud resolves the "cloud" field (str(None) when the manager
// passed none).
func (s *Server) volumeCloud(r *http.Request) (*config.Cloud, error) {
	c, _ := value(r, "cloud")
	return s.Nodes.CloudFor(c)
}

// ownVM checks vm is a VM of application a.
func (s *Server) ownVM(ctx context.Context, a *db.Application, vm string) error {
	res, err := s.DB.ResourceByVMID(ctx, vm)
	if err != nil || res.AppID != a.AID {
		return fmt.Errorf("VM %s is not a VM of application %d", vm, a.AID)
	}
	return nil
}

func (s *Server) createVolume(w http.ResponseWriter, r *http.Request, u *db.User, a *db.Application, _ *certs.Identity) {
	sz, _ := value(r, "size")
	name, _ := value(r, "name")
	vm, _ := value(r, "vm_id")
	size, err := strconv.ParseInt(sz, 10, 64)
	if err != nil {
		respondJSON(w, errObj("size must be an integer (MB)"))
		return
	}
	cl, err := s.volumeCloud(r)
	if err == nil {
		err = s.ownVM(r.Context(), a, vm)
	}
	if err != nil {
		respondJSON(w, errObj(err.Error()))
		return
	}
	id, err := s.makeVolume(r.Context(), a, cl, size, name, vm)
	if err != nil {
		s.Log.Error("create_volume", "app", a.AID, "err", err)
		respondJSON(w, errObj("creating the volume failed (see the director's log)"))
		return
	}
	s.Log.Info("volume created", "app", a.AID, "volume", id)
	respond(w, Obj{{"volume_id", id}})
}

// volumeOp runs op on a volume of the manager's application.
func (s *Server) volumeOp(w http.ResponseWriter, r *http.Request, a *db.Application, what string, op func(context.Context, *config.Cloud, *db.Volume) error) {
	volID, _ := value(r, "volume_id")
	cl, err := s.volumeCloud(r)
	if err != nil {
		respondJSON(w, errObj(err.Error()))
		return
	}
	v, err := s.DB.AppVolume(r.Context(), a.AID, volID)
	if errors.Is(err, db.ErrNotFound) {
		respondJSON(w, errObj(fmt.Sprintf("volume %s is not a volume of application %d", volID, a.AID)))
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	cctx, cancel := context.WithTimeout(r.Context(), 10*time.Minute)
	defer cancel()
	if err := op(cctx, cl, v); err != nil {
		s.Log.Error(what, "app", a.AID, "volume", volID, "err", err)
		respondJSON(w, errObj(what+" failed (see the director's log)"))
		return
	}
	s.Log.Info(what, "app", a.AID, "volume", volID)
	respond(w, Obj{})
}

func (s *Server) attachVolume(w http.ResponseWriter, r *http.Request, u *db.User, a *db.Application, _ *certs.Identity) {
	vm, _ := value(r, "vm_id")
	dev, _ := value(r, "device_name")
	if err := s.ownVM(r.Context(), a, vm); err != nil {
		respondJSON(w, errObj(err.Error()))
		return
	}
	s.volumeOp(w, r, a, "attach_volume", func(ctx context.Context, cl *config.Cloud, v *db.Volume) error {
		return s.Nodes.Clouds[cl.Name].AttachVolume(ctx, v.VolumeID, vm, devicePath(cl, dev))
	})
}

func (s *Server) detachVolume(w http.ResponseWriter, r *http.Request, u *db.User, a *db.Application, _ *certs.Identity) {
	s.volumeOp(w, r, a, "detach_volume", func(ctx context.Context, cl *config.Cloud, v *db.Volume) error {
		return s.Nodes.Clouds[cl.Name].DetachVolume(ctx, v.VolumeID)
	})
}

func (s *Server) destroyVolume(w http.ResponseWriter, r *http.Request, u *db.User, a *db.Application, _ *certs.Identity) {
	s.volumeOp(w, r, a, "destroy_volume", func(ctx context.Context, cl *config.Cloud, v *db.Volume) error {
		if err := s.Nodes.Clouds[cl.Name].DeleteVolume(ctx, v.VolumeID); err != nil {
			return err
		}
		return s.DB.DeleteVolume(ctx, v.ID)
	})
}
