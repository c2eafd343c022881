package main

import (
	"testing"
	"time"
)

// OpenStack as the original's director.cfg configured it: NETWORK_ID by
// name, and AUTO_ASSIGN_FLOATING_IP = false, where Neutron gives servers
// no public address and the director associates a floating IP itself. The
// fake's floating IPs come from a pool holding 127.0.0.1, where the test's
// manager listens: the application only runs if the director did it.
func TestOpenStackNetworks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{iaas: "NETWORK_ID = conpaas-net\nAUTO_ASSIGN_FLOATING_IP = false"})
	e.nova.NoAutoFloatingIP = true
	e.nova.AddNetwork("0f8f6b27-9c55-4d8c-a0a5-1a5b7b1f0001", "conpaas-net", false)
	e.nova.AddNetwork("0f8f6b27-9c55-4d8c-a0a5-1a5b7b1f0002", "public", true, "127.0.0.1")
	e.start()
	alice := newUserWithCerts(t, e, "alice", 5)
	ids := createApps(t, alice, 1)
	exact(t, "startapp", alice.call("POST", "/startapp/"+ids[0], nil), 200, ctJSON, "{}")
	waitFor(t, 90*time.Second, "the manager on its floating IP", func() bool { return apps(t, alice)[ids[0]] == "RUNNING" })
	vm := e.nova.Servers()[0]
	if len(vm.Networks) != 1 || vm.Networks[0] != "0f8f6b27-9c55-4d8c-a0a5-1a5b7b1f0001" {
		t.Fatalf("server networks %v", vm.Networks)
	}
	if f := e.nova.FloatingIPs(); f["127.0.0.1"] != "port-"+vm.ID {
		t.Fatalf("floating IPs %v", f)
	}
	exact(t, "stopapp", alice.call("POST", "/stopapp/"+ids[0], nil), 200, ctText, "{}")
	// The address went back to the pool with the server's port: a new
	// start gets it again.
	exact(t, "startapp again", alice.call("POST", "/startapp/"+ids[0], nil), 200, ctJSON, "{}")
	waitFor(t, 90*time.Second, "the second manager", func() bool { return apps(t, alice)[ids[0]] == "RUNNING" })
}
