package nutshell

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/conpaas/cps/test/keystonefake"
)

// neutron is the part of Neutron's API (networking v2.0) that
// conpaas-nutshell-openstack wait-agents and wait-dhcp use, with the
// shapes of the API reference (docs.openstack.org/api-ref/network/v2:
// "List all agents", "List networks", "List ports", "List DHCP agents
// hosting a network", "Schedule a network to a DHCP agent": POST
// /v2.0/agents/{agent_id}/dhcp-networks with {"network_id": ...}, 201).
// Behind it is a toy of the DHCP agent: a network scheduled to a live
// agent gets an ACTIVE DHCP port after activateAfter more port listings,
// as Neutron's agent takes a while to start dnsmasq.
type neutron struct {
	mu            sync.Mutex
	alive         []bool // per agent listing: the agents' "alive" (last repeats)
	listings      int
	hosted        bool // the DHCP agent hosts network hostonly
	activateAfter int
	portPolls     int
	schedules     []string // network_id of each POST .../dhcp-networks
}

const (
	netID   = "481247c4-6c60-4bc6-a2ad-a8c9779c1387"
	dhcpID  = "d7a2e5b0-3b31-4a7e-9a56-1f3c2f0b9e11"
	bridgeD = "0f6ad1a4-8e4b-4f0c-8c2e-3d2c6f5d7a90"
)

func (n *neutron) agents(alive bool) []map[string]any {
	return []map[string]any{
		{"id": dhcpID, "agent_type": "DHCP agent", "binary": "neutron-dhcp-agent", "host": "conpaas-nutshell", "alive": alive, "admin_state_up": true},
		{"id": bridgeD, "agent_type": "Linux bridge agent", "binary": "neutron-linuxbridge-agent", "host": "conpaas-nutshell", "alive": alive, "admin_state_up": true},
	}
}

func (n *neutron) aliveNow() bool {
	i := n.listings
	if i >= len(n.alive) {
		i = len(n.alive) - 1
	}
	return n.alive[i]
}

func (n *neutron) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n.mu.Lock()
	defer n.mu.Unlock()
	reply := func(code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(v)
	}
	notFound := func(typ string) {
		reply(404, map[string]any{"NeutronError": map[string]any{"type": typ, "message": typ + " could not be found.", "detail": ""}})
	}
	q := r.URL.Query()
	network := map[string]any{"id": netID, "name": "hostonly", "status": "ACTIVE", "admin_state_up": true, "shared": true,
		"provider:network_type": "flat", "provider:physical_network": "hostonly", "subnets": []string{}}
	switch p := r.URL.Path; {
	case r.Method == "GET" && p == "/v2.0/agents":
		all := n.agents(n.aliveNow())
		n.listings++
		out := []map[string]any{} // Neutron lists are [], never null
		for _, a := range all {
			if t := q.Get("agent_type"); t == "" || a["agent_type"] == t {
				out = append(out, a)
			}
		}
		reply(200, map[string]any{"agents": out})
	case r.Method == "GET" && p == "/v2.0/networks":
		out := []map[string]any{} // Neutron lists are [], never null
		if (q.Get("name") == "" || q.Get("name") == "hostonly") && (q.Get("id") == "" || q.Get("id") == netID) {
			out = append(out, network)
		}
		reply(200, map[string]any{"networks": out})
	case r.Method == "GET" && p == "/v2.0/networks/"+netID:
		reply(200, map[string]any{"network": network})
	case r.Method == "GET" && strings.HasPrefix(p, "/v2.0/networks/") && !strings.Contains(strings.TrimPrefix(p, "/v2.0/networks/"), "/"):
		notFound("NetworkNotFound")
	case r.Method == "GET" && p == "/v2.0/networks/"+netID+"/dhcp-agents":
		out := []map[string]any{} // Neutron lists are [], never null
		if n.hosted {
			out = n.agents(n.aliveNow())[:1]
		}
		reply(200, map[string]any{"agents": out})
	case r.Method == "GET" && p == "/v2.0/ports":
		if q.Get("network_id") != netID || q.Get("device_owner") != "network:dhcp" {
			reply(400, map[string]any{"NeutronError": map[string]any{"type": "HTTPBadRequest", "message": "unexpected filters " + r.URL.RawQuery}})
			return
		}
		out := []map[string]any{} // Neutron lists are [], never null
		if n.hosted {
			status := "DOWN"
			if n.portPolls >= n.activateAfter {
				status = "ACTIVE"
			}
			n.portPolls++
			out = append(out, map[string]any{"id": "5e0c1d7e-ports-dhcp", "network_id": netID, "device_owner": "network:dhcp", "status": status})
		}
		reply(200, map[string]any{"ports": out})
	case r.Method == "POST" && p == "/v2.0/agents/"+dhcpID+"/dhcp-networks":
		var body struct {
			NetworkID string `json:"network_id"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.NetworkID == "" {
			reply(400, map[string]any{"NeutronError": map[string]any{"type": "HTTPBadRequest", "message": "no network_id"}})
			return
		}
		n.schedules = append(n.schedules, body.NetworkID)
		if n.hosted {
			// What Neutron answers when the agent already hosts it.
			reply(409, map[string]any{"NeutronError": map[string]any{"type": "NetworkHostedByDHCPAgent",
				"message": fmt.Sprintf("The network %s has been already hosted by the DHCP Agent %s.", body.NetworkID, dhcpID)}})
			return
		}
		if !n.aliveNow() {
			reply(409, map[string]any{"NeutronError": map[string]any{"type": "AgentNotFound", "message": "dead agent"}})
			return
		}
		n.hosted = true
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(201)
		w.Write([]byte("null"))
	default:
		reply(404, map[string]any{"NeutronError": map[string]any{"type": "HTTPNotFound", "message": r.Method + " " + r.URL.String()}})
	}
}

// conpaas-nutshell-openstack wait-agents and wait-dhcp, through
// openstacksdk (Debian's python3-openstacksdk, as in the Nutshell) against
// a Neutron fake behind the Keystone fake. Run 6 of TestNutshellService
// showed the failure they are for: the subnet was made 0.3 s before the
// bridge agent's first report, Neutron logged "Unable to schedule network
// ...: no agents available", no DHCP server ever came, and the first
// boot waited 4 minutes and then restarted the DHCP agent.
func TestWaitDHCP(t *testing.T) {
	python := requireOpenstacksdk(t)
	script, err := filepath.Abs("../../scripts/nutshell/nutshell-openstack.py")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name          string
		step          string
		alive         []bool
		hosted        bool
		activateAfter int
		wantErr       string // in the output, with a non-zero exit; "" for success
		wantSchedules int
		wantSay       string
	}{
		// The agents come alive on the third listing: wait-agents waits.
		{name: "agents come alive", step: "wait-agents", alive: []bool{false, false, true}},
		{name: "agents never alive", step: "wait-agents", alive: []bool{false},
			wantErr: "did not report alive within 6 s"},
		// The network no agent hosts (run 6) goes to the live agent once,
		// and its DHCP port comes ACTIVE two listings later.
		{name: "unhosted network", step: "wait-dhcp", alive: []bool{true}, activateAfter: 2,
			wantSchedules: 1, wantSay: "gave it to the one on conpaas-nutshell"},
		{name: "hosted network", step: "wait-dhcp", alive: []bool{true}, hosted: true, activateAfter: 1},
		// A dead agent is not given the network; the step times out and
		// the first boot restarts the agent.
		{name: "dead agent", step: "wait-dhcp", alive: []bool{false},
			wantErr: "no DHCP server on network hostonly within 6 s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := &neutron{alive: tc.alive, hosted: tc.hosted, activateAfter: tc.activateAfter}
			nsrv := httptest.NewServer(n)
			t.Cleanup(nsrv.Close)
			ks := keystonefake.Start(t, nsrv.URL, "admin", "conpaas", "admin")
			ks.Services = []keystonefake.Service{{Type: "identity", Name: "keystone", URL: ks.URL}, {Type: "network", Name: "neutron", URL: ks.ProxyURL}}
			c := exec.Command(python, script, tc.step)
			// 6 s for the cases that wait in vain, time enough for the rest.
			timeout := "60"
			if tc.wantErr != "" {
				timeout = "6"
			}
			c.Env = append(os.Environ(), "NUTSHELL_AUTH_URL="+ks.URL, "NUTSHELL_PASSWORD=conpaas", "NUTSHELL_TIMEOUT="+timeout)
			start := time.Now()
			out, err := c.CombinedOutput()
			if tc.wantErr == "" && err != nil {
				t.Fatalf("%s: %v\n%s", tc.step, err, out)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(string(out), tc.wantErr)) {
				t.Fatalf("%s: %v, want an error with %q\n%s", tc.step, err, tc.wantErr, out)
			}
			if !strings.Contains(string(out), tc.wantSay) {
				t.Errorf("output lacks %q:\n%s", tc.wantSay, out)
			}
			n.mu.Lock()
			defer n.mu.Unlock()
			if len(n.schedules) != tc.wantSchedules {
				t.Errorf("%d schedules (%v), want %d", len(n.schedules), n.schedules, tc.wantSchedules)
			}
			for _, id := range n.schedules {
				if id != netID {
					t.Errorf("scheduled network %q, want %s", id, netID)
				}
			}
			if tc.step == "wait-agents" && tc.wantErr == "" && n.listings < 3 {
				t.Errorf("returned after %d agent listings, before the agents were alive", n.listings)
			}
			if tc.step == "wait-dhcp" && tc.wantErr == "" && n.portPolls <= tc.activateAfter {
				t.Errorf("returned after %d port listings, before the DHCP port was ACTIVE", n.portPolls)
			}
			if ks.Rejected.Load() != 0 {
				t.Errorf("%d requests without a valid token", ks.Rejected.Load())
			}
			t.Logf("%s in %s", tc.step, time.Since(start).Round(time.Millisecond))
		})
	}
}
