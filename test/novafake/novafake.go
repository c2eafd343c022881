// Package novafake is an in-process OpenStack for tests: Keystone v3
// password tokens with a service catalogue, the Nova compute calls the
// director makes (servers create/get/delete, flavors, os-security-groups)
// and Glance image get. It checks what a real cloud checks (token, request
// shape, that image / flavor / key pair / security group exist, user_data
// is base64 within Nova's limit) and keeps state, so tests see the same
// failures a real cloud would give.
package novafake

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/conpaas/cps/test/keystonefake"
)

// Server is a running fake.
type Server struct {
	URL string // base URL; AUTH_URL is URL + "/v3"

	// User, Password, Project, Domain and Region are what the cloud's
	// Keystone (test/keystonefake's token API) accepts and its catalog
	// says, as New sets them.
	User, Password, Project, Domain, Region string
	// ClockOffset shifts the Date header, to test clock-skew detection.
	ClockOffset time.Duration
	// FloatingIP, when set, is the floating address of every server (a
	// director test serves their manager there). CreateDelay holds the
	// create answer back after the server exists, as a slow API would.
	FloatingIP  string
	CreateDelay time.Duration
	// NoAutoFloatingIP makes servers get a floating address only when one
	// is associated through Neutron (neutron.go), as Neutron behaves.
	NoAutoFloatingIP bool
	neutron          neutron

	ts *httptest.Server

	mu       sync.Mutex
	ks       *keystonefake.Server
	flavors  map[string]string // id -> name
	images   map[string]string // id -> status
	keypairs map[string]bool
	groups   []*SecGroup
	servers  map[string]*VM
	seq      int
	requests []string
}

// SecGroup is a nova security group.
type SecGroup struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Rules []Rule `json:"rules"`
}

// Rule is one of its rules.
type Rule struct {
	From, To int
	Protocol string
}

// VM is a created server.
type VM struct {
	ID             string
	Name           string
	ImageRef       string
	FlavorRef      string
	KeyName        string
	SecurityGroups []string
	UserData       []byte // decoded
	Metadata       map[string]string
	Networks       []string // the networks' UUIDs it was created on
	Deleted        bool
	gets           int
}

// New starts a fake with one project, flavors m1.small/m1.medium and a
// "default" security group with no rules.
func New() *Server {
	s := &Server{
		User: "admin", Password: "secret", Project: "demo", Domain: "Default", Region: "RegionOne",
		ks:       keystonefake.New("admin", "secret", "demo"),
		flavors:  map[string]string{"1": "m1.tiny", "2": "m1.small", "3": "m1.medium"},
		images:   map[string]string{},
		keypairs: map[string]bool{},
		groups:   []*SecGroup{{ID: "sg-default", Name: "default"}},
		servers:  map[string]*VM{},
	}
	s.ts = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.ts.URL
	ks := s.ks
	ks.BaseURL, ks.URL = s.URL, s.URL+"/v3"
	ks.User, ks.Password, ks.Project, ks.Region = s.User, s.Password, s.Project, s.Region
	ks.Services = []keystonefake.Service{{Type: "identity", Name: "keystone", URL: s.URL + "/v3"},
		{Type: "compute", Name: "nova", URL: s.URL + "/compute/v2.1"}, {Type: "image", Name: "glance", URL: s.URL + "/image"},
		{Type: "network", Name: "neutron", URL: s.URL + "/network"}}
	return s
}

// Close stops the server.
func (s *Server) Close() { s.ts.Close() }

// AuthURL is the Keystone v3 URL for director.cfg.
func (s *Server) AuthURL() string { return s.URL + "/v3" }

// AddImage makes an image known to Glance ("active" unless status given).
func (s *Server) AddImage(id, status string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if status == "" {
		status = "active"
	}
	s.images[id] = status
}

// DeleteImage removes an image.
func (s *Server) DeleteImage(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.images, id)
}

// SetClockOffset shifts the Date header of later responses.
func (s *Server) SetClockOffset(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ClockOffset = d
}

// AddKeypair makes a key pair known.
func (s *Server) AddKeypair(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keypairs[name] = true
}

// AddSecGroup adds a group opening the given TCP ports.
func (s *Server) AddSecGroup(name string, ports ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := &SecGroup{ID: fmt.Sprintf("sg-%d", len(s.groups)+1), Name: name}
	for _, p := range ports {
		g.Rules = append(g.Rules, Rule{From: p, To: p, Protocol: "tcp"})
	}
	s.groups = append(s.groups, g)
}

// Servers returns a copy of every server ever created.
func (s *Server) Servers() []VM {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []VM
	for i := 1; i <= s.seq; i++ {
		if v, ok := s.servers[fmt.Sprintf("srv-%d", i)]; ok {
			out = append(out, *v)
		}
	}
	return out
}

// Requests returns "METHOD path" of every request so far.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func fault(w http.ResponseWriter, code int, msg string) {
	name := map[int]string{400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound", 409: "conflictingRequest"}[code]
	reply(w, code, map[string]any{name: map[string]any{"code": code, "message": msg}})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	w.Header().Set("Date", time.Now().Add(s.ClockOffset).UTC().Format(http.TimeFormat))
	s.requests = append(s.requests, r.Method+" "+r.URL.Path)
	s.mu.Unlock()
	p := r.URL.Path
	// Glance's version document is public, like on a real cloud.
	if r.Method == http.MethodGet && (p == "/image/" || p == "/image") {
		reply(w, 300, map[string]any{"versions": []map[string]any{
			{"id": "v2.16", "status": "CURRENT", "links": []map[string]any{{"rel": "self", "href": s.URL + "/image/v2/"}}},
			{"id": "v2.15", "status": "SUPPORTED", "links": []map[string]any{{"rel": "self", "href": s.URL + "/image/v2/"}}},
		}})
		return
	}
	if r.Method == http.MethodGet && (p == "/network/" || p == "/network") {
		reply(w, 200, map[string]any{"versions": []map[string]any{
			{"id": "v2.0", "status": "CURRENT", "links": []map[string]any{{"rel": "self", "href": s.URL + "/network/v2.0/"}}},
		}})
		return
	}
	if p == "/" || p == "" || strings.HasPrefix(p, "/v3") {
		s.identity(w, r)
		return
	}
	if !s.ks.Valid(r.Header.Get("X-Auth-Token")) {
		fault(w, 401, "The request you have made requires authentication.")
		return
	}
	switch {
	case strings.HasPrefix(p, "/compute/v2.1/"):
		s.nova(w, r, strings.TrimPrefix(p, "/compute/v2.1"))
	case strings.HasPrefix(p, "/network/v2.0/"):
		s.serveNeutron(w, r, strings.TrimPrefix(p, "/network/v2.0"))
	case strings.HasPrefix(p, "/image/v2/images/") && r.Method == http.MethodGet:
		id := strings.TrimPrefix(p, "/image/v2/images/")
		s.mu.Lock()
		st, ok := s.images[id]
		s.mu.Unlock()
		if !ok {
			fault(w, 404, "No image found with ID "+id)
			return
		}
		reply(w, 200, map[string]any{"id": id, "name": "conpaas", "status": st, "disk_format": "raw", "container_format": "bare",
			"visibility": "private", "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z", "tags": []string{}})
	default:
		fault(w, 404, "no route "+r.Method+" "+p)
	}
}

// identity is Keystone: test/keystonefake's token API (the one Keystone
// fake), set up by New with this cloud's user, project, region and services.
func (s *Server) identity(w http.ResponseWriter, r *http.Request) {
	s.ks.Handler().ServeHTTP(w, r)
}

func (s *Server) nova(w http.ResponseWriter, r *http.Request, p string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case r.Method == http.MethodGet && p == "/flavors/detail":
		var l []map[string]any
		for id, n := range s.flavors {
			l = append(l, map[string]any{"id": id, "name": n, "ram": 2048, "vcpus": 1, "disk": 20})
		}
		reply(w, 200, map[string]any{"flavors": l})
	case r.Method == http.MethodPost && p == "/servers":
		s.createServer(w, r)
	case r.Method == http.MethodGet && p == "/servers/detail":
		l := []any{}
		for i := 1; i <= s.seq; i++ {
			if v, ok := s.servers[fmt.Sprintf("srv-%d", i)]; ok && !v.Deleted {
				l = append(l, s.serverJSON(v, "ACTIVE"))
			}
		}
		reply(w, 200, map[string]any{"servers": l})
	case strings.HasPrefix(p, "/servers/"):
		id := strings.TrimPrefix(p, "/servers/")
		v, ok := s.servers[id]
		if !ok || v.Deleted {
			fault(w, 404, "Instance "+id+" could not be found.")
			return
		}
		switch r.Method {
		case http.MethodGet:
			// BUILD on the first look, ACTIVE afterwards, like a fast cloud.
			v.gets++
			status := "ACTIVE"
			if v.gets == 1 {
				status = "BUILD"
			}
			reply(w, 200, map[string]any{"server": s.serverJSON(v, status)})
		case http.MethodDelete:
			v.Deleted = true
			// Neutron disassociates the floating IPs of a deleted port.
			for _, f := range s.neutron.fips {
				if f.PortID == "port-"+v.ID {
					f.PortID = ""
				}
			}
			w.WriteHeader(204)
		default:
			fault(w, 405, "method not allowed")
		}
	case r.Method == http.MethodGet && p == "/os-security-groups":
		var l []map[string]any
		for _, g := range s.groups {
			rules := []map[string]any{}
			for i, ru := range g.Rules {
				rules = append(rules, map[string]any{"id": fmt.Sprintf("%s-r%d", g.ID, i), "from_port": ru.From, "to_port": ru.To,
					"ip_protocol": ru.Protocol, "ip_range": map[string]any{"cidr": "0.0.0.0/0"}, "parent_group_id": g.ID})
			}
			l = append(l, map[string]any{"id": g.ID, "name": g.Name, "description": "", "tenant_id": "p1", "rules": rules})
		}
		reply(w, 200, map[string]any{"security_groups": l})
	case r.Method == http.MethodPost && p == "/os-security-groups":
		var b struct {
			SG struct{ Name, Description string } `json:"security_group"`
		}
		if err := json.NewDecoder(r.Body).Decode(&b); err != nil || b.SG.Name == "" {
			fault(w, 400, "security_group.name is required")
			return
		}
		g := &SecGroup{ID: fmt.Sprintf("sg-%d", len(s.groups)+1), Name: b.SG.Name}
		s.groups = append(s.groups, g)
		reply(w, 200, map[string]any{"security_group": map[string]any{"id": g.ID, "name": g.Name, "description": b.SG.Description, "rules": []any{}, "tenant_id": "p1"}})
	case r.Method == http.MethodPost && p == "/os-security-group-rules":
		var b struct {
			R struct {
				Parent   string `json:"parent_group_id"`
				From     int    `json:"from_port"`
				To       int    `json:"to_port"`
				Protocol string `json:"ip_protocol"`
				CIDR     string `json:"cidr"`
			} `json:"security_group_rule"`
		}
		if err := json.NewDecoder(r.Body).Decode(&b); err != nil || b.R.Protocol == "" || b.R.From > b.R.To {
			fault(w, 400, "invalid security_group_rule")
			return
		}
		for _, g := range s.groups {
			if g.ID == b.R.Parent {
				g.Rules = append(g.Rules, Rule{From: b.R.From, To: b.R.To, Protocol: strings.ToLower(b.R.Protocol)})
				reply(w, 200, map[string]any{"security_group_rule": map[string]any{"id": fmt.Sprintf("%s-r%d", g.ID, len(g.Rules)),
					"from_port": b.R.From, "to_port": b.R.To, "ip_protocol": b.R.Protocol, "parent_group_id": g.ID, "ip_range": map[string]any{"cidr": b.R.CIDR}}})
				return
			}
		}
		fault(w, 404, "Security group "+b.R.Parent+" not found.")
	default:
		fault(w, 404, "no route "+r.Method+" "+p)
	}
}

func (s *Server) serverJSON(v *VM, status string) map[string]any {
	fip := "172.16.0." + strings.TrimPrefix(v.ID, "srv-")
	if s.FloatingIP != "" {
		fip = s.FloatingIP
	}
	addrs := []map[string]any{{"addr": s.fixedIP(v.ID), "version": 4, "OS-EXT-IPS:type": "fixed"}}
	if s.NoAutoFloatingIP {
		fip = s.neutron.floatingOf(v.ID)
	}
	if fip != "" {
		addrs = append(addrs, map[string]any{"addr": fip, "version": 4, "OS-EXT-IPS:type": "floating"})
	}
	return map[string]any{
		"id": v.ID, "name": v.Name, "status": status, "key_name": v.KeyName, "metadata": v.Metadata,
		"image": map[string]any{"id": v.ImageRef}, "flavor": map[string]any{"id": v.FlavorRef},
		"addresses": map[string]any{"public": addrs},
		"created":   "2024-01-01T00:00:00Z", "updated": "2024-01-01T00:00:00Z", "tenant_id": "p1", "user_id": "u1",
	}
}

// createServer validates like Nova's API layer: required fields, then
// that every referenced object exists.
func (s *Server) createServer(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Server struct {
			Name           string              `json:"name"`
			ImageRef       string              `json:"imageRef"`
			FlavorRef      string              `json:"flavorRef"`
			KeyName        string              `json:"key_name"`
			UserData       *string             `json:"user_data"`
			SecurityGroups []map[string]string `json:"security_groups"`
			Metadata       map[string]string   `json:"metadata"`
			Networks       []map[string]string `json:"networks"`
		} `json:"server"`
	}
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(&b); err != nil {
		fault(w, 400, "Invalid input for field/attribute server: "+err.Error())
		return
	}
	sv := b.Server
	switch {
	case sv.Name == "":
		fault(w, 400, "Invalid input for field/attribute name.")
		return
	case sv.ImageRef == "":
		fault(w, 400, "Missing imageRef attribute")
		return
	case sv.FlavorRef == "":
		fault(w, 400, "Missing flavorRef attribute")
		return
	}
	if st, ok := s.images[sv.ImageRef]; !ok || st != "active" {
		fault(w, 400, "Image "+sv.ImageRef+" could not be found.")
		return
	}
	if _, ok := s.flavors[sv.FlavorRef]; !ok {
		fault(w, 400, "Flavor "+sv.FlavorRef+" could not be found.")
		return
	}
	if sv.KeyName != "" && !s.keypairs[sv.KeyName] {
		fault(w, 400, "Invalid key_name provided.")
		return
	}
	var groups []string
	for _, g := range sv.SecurityGroups {
		found := false
		for _, have := range s.groups {
			found = found || have.Name == g["name"]
		}
		if !found {
			fault(w, 400, "Security group "+g["name"]+" not found for project p1.")
			return
		}
		groups = append(groups, g["name"])
	}
	var ud []byte
	if sv.UserData != nil {
		if len(*sv.UserData) > 65535 {
			fault(w, 400, "User data too large. User data must be no larger than 65535 bytes once base64 encoded.")
			return
		}
		var err error
		if ud, err = base64.StdEncoding.DecodeString(*sv.UserData); err != nil {
			fault(w, 400, "User data needs to be valid base 64.")
			return
		}
	}
	var nets []string
	for _, n := range sv.Networks {
		if !s.neutron.hasNetwork(n["uuid"]) {
			fault(w, 400, "Network "+n["uuid"]+" could not be found.")
			return
		}
		nets = append(nets, n["uuid"])
	}
	s.seq++
	v := &VM{ID: fmt.Sprintf("srv-%d", s.seq), Name: sv.Name, ImageRef: sv.ImageRef, FlavorRef: sv.FlavorRef, KeyName: sv.KeyName,
		SecurityGroups: groups, UserData: ud, Metadata: sv.Metadata, Networks: nets}
	s.servers[v.ID] = v
	if s.CreateDelay > 0 {
		s.mu.Unlock()
		time.Sleep(s.CreateDelay)
		s.mu.Lock()
	}
	reply(w, 202, map[string]any{"server": map[string]any{"id": v.ID, "adminPass": "x", "OS-DCF:diskConfig": "MANUAL",
		"links": []any{}, "security_groups": sv.SecurityGroups}})
}
