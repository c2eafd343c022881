package novafake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// neutron is the little of Neutron the director uses: networks by name
// (NETWORK_ID given as a name), the ports of a server, and floating IPs
// (list, allocate from an external network, associate with a port), as the
// director does when AUTO_ASSIGN_FLOATING_IP = false.
type neutron struct {
	networks []network
	fips     []*floatingIP
	fipPool  []string // addresses new floating IPs get, in order
}

type network struct {
	ID, Name string
	External bool
}

type floatingIP struct {
	ID, Address, NetworkID, PortID string
}

// AddNetwork adds a network; external ones supply floating IPs, whose
// addresses are taken from pool.
func (s *Server) AddNetwork(id, name string, external bool, pool ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.neutron.networks = append(s.neutron.networks, network{id, name, external})
	s.neutron.fipPool = append(s.neutron.fipPool, pool...)
}

// FloatingIPs returns address -> port of every floating IP.
func (s *Server) FloatingIPs() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[string]string{}
	for _, f := range s.neutron.fips {
		m[f.Address] = f.PortID
	}
	return m
}

func (n *neutron) hasNetwork(id string) bool {
	for _, x := range n.networks {
		if x.ID == id {
			return true
		}
	}
	return false
}

// fixedIP is a server's address on its network; its one port is
// "port-" + server id.
func (s *Server) fixedIP(id string) string { return "10.0.0." + strings.TrimPrefix(id, "srv-") }

func (n *neutron) floatingOf(server string) string {
	for _, f := range n.fips {
		if f.PortID == "port-"+server {
			return f.Address
		}
	}
	return ""
}

func fipJSON(f *floatingIP) map[string]any {
	var port any
	if f.PortID != "" {
		port = f.PortID
	}
	return map[string]any{"id": f.ID, "floating_ip_address": f.Address, "floating_network_id": f.NetworkID, "port_id": port,
		"status": map[bool]string{true: "ACTIVE", false: "DOWN"}[f.PortID != ""], "tenant_id": "p1", "project_id": "p1"}
}

func (s *Server) serveNeutron(w http.ResponseWriter, r *http.Request, p string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := &s.neutron
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodGet && p == "/networks":
		l := []map[string]any{}
		for _, x := range n.networks {
			if name := q.Get("name"); name != "" && name != x.Name {
				continue
			}
			if ext := q.Get("router:external"); ext != "" && ext != fmt.Sprint(x.External) {
				continue
			}
			l = append(l, map[string]any{"id": x.ID, "name": x.Name, "router:external": x.External, "status": "ACTIVE", "admin_state_up": true, "tenant_id": "p1"})
		}
		reply(w, 200, map[string]any{"networks": l})
	case r.Method == http.MethodGet && p == "/ports":
		l := []map[string]any{}
		if v, ok := s.servers[q.Get("device_id")]; ok && !v.Deleted {
			l = append(l, map[string]any{"id": "port-" + v.ID, "device_id": v.ID, "status": "ACTIVE",
				"fixed_ips": []map[string]any{{"ip_address": s.fixedIP(v.ID)}}})
		}
		reply(w, 200, map[string]any{"ports": l})
	case r.Method == http.MethodGet && p == "/floatingips":
		l := []map[string]any{}
		for _, f := range n.fips {
			l = append(l, fipJSON(f))
		}
		reply(w, 200, map[string]any{"floatingips": l})
	case r.Method == http.MethodPost && p == "/floatingips":
		var b struct {
			F struct {
				NetworkID string `json:"floating_network_id"`
			} `json:"floatingip"`
		}
		if err := json.NewDecoder(r.Body).Decode(&b); err != nil || !n.hasNetwork(b.F.NetworkID) {
			neutronFault(w, 404, "ExternalNetworkNotFound", "External network "+b.F.NetworkID+" could not be found.")
			return
		}
		if len(n.fipPool) == 0 {
			neutronFault(w, 409, "IpAddressGenerationFailure", "No more IP addresses available on network "+b.F.NetworkID+".")
			return
		}
		f := &floatingIP{ID: fmt.Sprintf("fip-%d", len(n.fips)+1), Address: n.fipPool[0], NetworkID: b.F.NetworkID}
		n.fipPool = n.fipPool[1:]
		n.fips = append(n.fips, f)
		reply(w, 201, map[string]any{"floatingip": fipJSON(f)})
	case r.Method == http.MethodPut && strings.HasPrefix(p, "/floatingips/"):
		id := strings.TrimPrefix(p, "/floatingips/")
		var b struct {
			F struct {
				PortID *string `json:"port_id"`
			} `json:"floatingip"`
		}
		json.NewDecoder(r.Body).Decode(&b)
		for _, f := range n.fips {
			if f.ID != id {
				continue
			}
			if b.F.PortID != nil && *b.F.PortID != "" && f.PortID != "" {
				neutronFault(w, 409, "FloatingIPPortAlreadyAssociated", "Floating IP "+id+" is already associated.")
				return
			}
			if b.F.PortID != nil {
				f.PortID = *b.F.PortID
			}
			reply(w, 200, map[string]any{"floatingip": fipJSON(f)})
			return
		}
		neutronFault(w, 404, "FloatingIPNotFound", "Floating IP "+id+" could not be found")
	default:
		neutronFault(w, 404, "HTTPNotFound", "no route "+r.Method+" "+p)
	}
}

func neutronFault(w http.ResponseWriter, code int, typ, msg string) {
	reply(w, code, map[string]any{"NeutronError": map[string]any{"type": typ, "message": msg, "detail": ""}})
}
