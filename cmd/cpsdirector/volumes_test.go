package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// The manager's volume callbacks (cloud.py create_volume, attach_volume,
// detach_volume, destroy_volume) and volumes in nodes_info
// (get_standard_sninfo_with_volume), against the EC2 fake's EBS.
func TestVolumes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.start()
	alice := newUserWithCerts(t, e, "alice", 10)
	ids := createApps(t, alice, 1)
	exact(t, "startapp", alice.call("POST", "/startapp/"+ids[0]+"/aws", nil), 200, ctJSON, "{}")
	waitFor(t, 90*time.Second, "the manager", func() bool { return apps(t, alice)[ids[0]] == "RUNNING" })
	var mgrVM string
	e.ec2.Mu().Lock()
	for id := range e.ec2.Instances {
		mgrVM = id
	}
	e.ec2.Mu().Unlock()
	mgr := e.vms.managerClient()

	// 1500 MB: the original rounded up to whole GiB for EBS.
	r := httpsPost(t, mgr, e.url+"/create_volume", [][2]string{{"size", "1500"}, {"name", "data"}, {"vm_id", mgrVM}, {"cloud", "aws"}}, nil)
	v := match(t, "create_volume", r.body, `{"volume_id": "<str>"}`).(map[string]any)["volume_id"].(string)
	e.ec2.Mu().Lock()
	if vol := e.ec2.Volumes[v]; vol == nil || vol.SizeGiB != 2 || vol.AZ != "us-east-1a" {
		t.Fatalf("volume %+v", vol)
	}
	e.ec2.Mu().Unlock()
	exact(t, "attach_volume", httpsPost(t, mgr, e.url+"/attach_volume", [][2]string{{"vm_id", mgrVM}, {"volume_id", v}, {"device_name", "sdf"}, {"cloud", "aws"}}, nil), 200, ctText, "{}")
	e.ec2.Mu().Lock()
	if vol := e.ec2.Volumes[v]; vol.Instance != mgrVM || vol.Device != "/dev/sdf" {
		t.Fatalf("attachment %+v", vol)
	}
	e.ec2.Mu().Unlock()
	exact(t, "detach_volume", httpsPost(t, mgr, e.url+"/detach_volume", [][2]string{{"volume_id", v}, {"cloud", "aws"}}, nil), 200, ctText, "{}")
	exact(t, "destroy_volume", httpsPost(t, mgr, e.url+"/destroy_volume", [][2]string{{"volume_id", v}, {"cloud", "aws"}}, nil), 200, ctText, "{}")
	e.ec2.Mu().Lock()
	if e.ec2.Volumes[v] != nil {
		t.Fatal("volume not deleted")
	}
	e.ec2.Mu().Unlock()
	// Only the application's own VMs and volumes.
	r = httpsPost(t, mgr, e.url+"/create_volume", [][2]string{{"size", "1"}, {"name", "x"}, {"vm_id", "i-someoneelse"}, {"cloud", "aws"}}, nil)
	if !strings.Contains(string(r.body), "is not a VM of application") {
		t.Fatalf("foreign VM: %s", r.body)
	}
	r = httpsPost(t, mgr, e.url+"/destroy_volume", [][2]string{{"volume_id", "vol-foreign"}, {"cloud", "aws"}}, nil)
	if !strings.Contains(string(r.body), "is not a volume of application") {
		t.Fatalf("foreign volume: %s", r.body)
	}

	// A node with a volume, named after its VM (vol_name % vol).
	r = httpsPost(t, mgr, e.url+"/create_nodes", [][2]string{
		{"nodes_info", "[{'cloud': 'aws', 'role': 'mysql', 'volumes': [{'vol_name': 'mysql-%(vm_id)s', 'vol_size': 2048, 'dev_name': 'sdb'}]}]"},
		{"service_id", "1"}, {"service_type", "mysql"}, {"manager_ip", "127.0.0.1"}, {"context", "{'mysql_username': 'mysqldb', 'mysql_password': 'pw'}"},
	}, nil)
	nodes := match(t, "create_nodes with a volume", r.body, `[{"id": "<str>", "vmid": "<str>", "ip": "127.0.0.1", "private_ip": "<str>", "cloud_name": "aws",
		"weight_backend": 100, "role": "mysql", "volumes": [{"vol_name": "<str>", "vol_size": 2048, "vol_id": "<str>", "vm_id": "<str>", "dev_name": "sdb", "cloud": null}]}]`).([]any)
	n := nodes[0].(map[string]any)
	vol := n["volumes"].([]any)[0].(map[string]any)
	if vol["vol_name"] != "mysql-"+n["vmid"].(string) || vol["vm_id"] != n["vmid"] {
		t.Fatalf("volume %v of node %v", vol, n["vmid"])
	}
	e.ec2.Mu().Lock()
	ev := e.ec2.Volumes[vol["vol_id"].(string)]
	if ev == nil || ev.Instance != n["vmid"] || ev.Device != "/dev/sdb" || ev.SizeGiB != 2 {
		t.Fatalf("EBS volume %+v", ev)
	}
	// The agent's context carries the manager's replacements.
	ud := string(e.ec2.Instances[n["vmid"].(string)].UserData)
	e.ec2.Mu().Unlock()
	if !strings.Contains(ud, "[agent]\n\nTYPE = mysql\n") {
		t.Fatalf("agent context:\n%s", ud)
	}
	b, _ := json.Marshal(nodes)
	exact(t, "remove_nodes", httpsPost(t, mgr, e.url+"/remove_nodes", [][2]string{{"nodes", string(b)}}, nil), 200, ctText, "{}")
	// The node's volume goes with it, as the original's kill_instance
	// deleted a VM's volumes.
	gone := func(id string) func() bool {
		return func() bool {
			e.ec2.Mu().Lock()
			defer e.ec2.Mu().Unlock()
			return e.ec2.Volumes[id] == nil
		}
	}
	waitFor(t, 60*time.Second, "the node's volume to be deleted", gone(vol["vol_id"].(string)))
	// A detached volume goes with its application.
	r = httpsPost(t, mgr, e.url+"/create_volume", [][2]string{{"size", "1024"}, {"name", "loose"}, {"vm_id", mgrVM}, {"cloud", "aws"}}, nil)
	loose := match(t, "create_volume", r.body, `{"volume_id": "<str>"}`).(map[string]any)["volume_id"].(string)
	exact(t, "deleteapp", alice.call("POST", "/deleteapp/"+ids[0], nil), 200, ctText, "{}")
	waitFor(t, 60*time.Second, "the application's volume to be deleted", gone(loose))
}
