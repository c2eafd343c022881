package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// newUserWithCerts registers name with credit and returns its client,
// certificates in hand.
func newUserWithCerts(t *testing.T, e *env, name string, credit int) *pclient {
	t.Helper()
	r := e.login("", "").call("POST", "/new_user", url.Values{"username": {name}, "email": {name + "@example.org"},
		"password": {name + "-password"}, "credit": {fmt.Sprint(credit)}})
	if !strings.Contains(string(r.body), `"username": "`+name+`"`) {
		t.Fatalf("new_user %s: %s", name, r.body)
	}
	c := e.login(name, name+"-password")
	c.getcerts()
	return c
}

func createApps(t *testing.T, c *pclient, n int) []string {
	t.Helper()
	var ids []string
	base := len(apps(t, c))
	for i := 0; i < n; i++ {
		r := c.call("POST", "/createapp", url.Values{"name": {fmt.Sprintf("app%02d", base+i)}})
		var a struct{ AID int64 }
		if err := json.Unmarshal(r.body, &a); err != nil || a.AID == 0 {
			t.Fatalf("createapp: %s", r.body)
		}
		ids = append(ids, fmt.Sprint(a.AID))
	}
	return ids
}

func apps(t *testing.T, c *pclient) map[string]string {
	t.Helper()
	var l []struct {
		AID    int64
		Status string
	}
	json.Unmarshal(c.call("GET", "/listapp", nil).body, &l)
	m := map[string]string{}
	for _, a := range l {
		m[fmt.Sprint(a.AID)] = a.Status
	}
	return m
}

// Credit is taken atomically: 20 concurrent starts with credit for 5
// start 5 managers, the other 15 are refused as the original refused a
// user without credit. (The original checked credit > 0 and charged after
// the VM existed: all 20 would start.)
func TestCreditConcurrentStarts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.start()
	alice := newUserWithCerts(t, e, "alice", 5)
	ids := createApps(t, alice, 20)
	answers := make([]string, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = string(alice.call("POST", "/startapp/"+id, nil).body)
		}()
	}
	wg.Wait()
	count := map[string]int{}
	for _, a := range answers {
		count[a]++
	}
	if count["{}"] != 5 || count[jsonifyErr("Insufficient credits")] != 15 {
		t.Fatalf("answers %v", count)
	}
	waitFor(t, 90*time.Second, "5 managers running", func() bool {
		n := 0
		for _, s := range apps(t, alice) {
			if s == "RUNNING" {
				n++
			}
		}
		return n == 5
	})
	if n := len(e.nova.Servers()); n != 5 {
		t.Fatalf("%d VMs created, want 5", n)
	}
	exact(t, "credit", alice.call("GET", "/user_credit", nil), 200, ctText, "0")
	// And a manager's agents need credit too.
	mgr := e.vms.managerClient()
	r := httpsPost(t, mgr, e.url+"/create_nodes", [][2]string{{"nodes_info", "[{'cloud': 'default'}]"}, {"service_id", "1"},
		{"service_type", "php"}, {"manager_ip", "127.0.0.1"}, {"context", "{}"}}, nil)
	exact(t, "create_nodes without credit", r, 200, ctJSON, jsonifyErr("Insufficient credits"))
}

// A director killed (SIGKILL) in the middle of a burst of starts leaves no
// VM that no record knows: on restart it terminates the VMs whose creation
// it did not see finish (found by their tag) and adopts the managers that
// were booting.
func TestCrashDuringStarts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.start()
	alice := newUserWithCerts(t, e, "alice", 20)
	ids := createApps(t, alice, 10)
	// Managers do not answer yet: the five Nova ones stay booting. EC2
	// answers RunInstances only after 8 s: the director dies first, the
	// instances exist.
	e.vms.setDown(true)
	e.ec2.RunDelay = 8 * time.Second
	for i, id := range ids {
		path := "/startapp/" + id
		if i%2 == 1 {
			path += "/aws"
		}
		exact(t, "startapp "+id, alice.call("POST", path, nil), 200, ctJSON, "{}")
	}
	waitFor(t, 30*time.Second, "the clouds to have 10 VMs", func() bool {
		e.ec2.Mu().Lock()
		n := len(e.ec2.Instances)
		e.ec2.Mu().Unlock()
		return n == 5 && len(e.nova.Servers()) == 5
	})
	e.kill()
	e.ec2.RunDelay = 0
	e.vms.setDown(false)
	e.start()
	waitFor(t, 90*time.Second, "every application settled", func() bool {
		settled := 0
		for _, s := range apps(t, alice) {
			if s == "RUNNING" || s == "ERROR" {
				settled++
			}
		}
		return settled == 10
	})
	// Managers whose VM the director had recorded (booting) are adopted
	// and run; creations it never saw answered (all of EC2's, any of
	// Nova's whose answer the kill cut off) were terminated: ERROR.
	st := apps(t, alice)
	running := 0
	for _, id := range ids {
		if st[id] == "RUNNING" {
			running++
		}
	}
	if running == 0 || running == 10 {
		t.Fatalf("%d of 10 applications running: the kill should leave both adopted and terminated creations (%v)", running, st)
	}
	// The invariant: the clouds' live VMs are exactly the recorded ones.
	var res []struct{ VMID string }
	json.Unmarshal(alice.call("GET", "/list_resources", nil).body, &res)
	var recorded, live []string
	for _, r := range res {
		recorded = append(recorded, r.VMID)
	}
	for _, v := range e.nova.Servers() {
		if !v.Deleted {
			live = append(live, v.ID)
		}
	}
	e.ec2.Mu().Lock()
	for id, in := range e.ec2.Instances {
		if in.State != "terminated" {
			live = append(live, id)
		}
	}
	e.ec2.Mu().Unlock()
	sort.Strings(recorded)
	sort.Strings(live)
	if strings.Join(recorded, ",") != strings.Join(live, ",") || len(live) != running {
		t.Fatalf("recorded VMs %v, live VMs %v", recorded, live)
	}
	// The terminated creations were refunded.
	exact(t, "credit", alice.call("GET", "/user_credit", nil), 200, ctText, fmt.Sprint(20-running))
}
