package nutshell

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/conpaas/cps/internal/testutil"
)

// heredoc returns the body of the `cat > target <<'EOT'` in script: what
// openstack-aio.sh writes into the appliance, tested here as written.
func heredoc(t *testing.T, script, target string) string {
	t.Helper()
	f, err := os.Open(script)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var body []string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case !in && strings.HasPrefix(l, "cat > "+target+" <<"):
			in = true
		case in && l == "EOT":
			return strings.Join(body, "\n") + "\n"
		case in:
			body = append(body, l)
		}
	}
	t.Fatalf("%s writes no %s", script, target)
	return ""
}

// The appliance's host-only plumbing, run as openstack-aio.sh writes it, in
// a network namespace of its own with real ip, bridge and nft: the DHCP
// guard's table loads twice (a restart reloads it) and drops DHCP answers
// on eth1's ingress, before the bridge and br_netfilter (run 5 in
// docs/nutshell.md: on the bridge's forward hook it missed QEMU's offers);
// conpaas-nutshell-bridge joins the
// bridge Nova plugs instances into, "brq" + the first 11 characters of the
// network's ID (Nova's nova/network/neutron.py, pruned to NIC_NAME_LEN
// 14), to br-hostonly, twice without error and without a second link, and
// does nothing before the first boot has written the network's ID.
func TestHostOnlyPlumbing(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tool := range []string{"unshare", "ip", "bridge", "nft"} {
		testutil.RequireTool(t, tool)
	}
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	aio := filepath.Join(repo, "scripts/nutshell/openstack-aio.sh")
	dir := t.TempDir()
	guard, bridge, idFile := filepath.Join(dir, "dhcp-guard.nft"), filepath.Join(dir, "conpaas-nutshell-bridge"), filepath.Join(dir, "hostonly-network-id")
	if err := os.WriteFile(guard, []byte(heredoc(t, aio, "/etc/conpaas-nutshell/dhcp-guard.nft")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bridge, []byte(heredoc(t, aio, "/usr/local/sbin/conpaas-nutshell-bridge")), 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(script string) string {
		t.Helper()
		cmd := exec.Command("unshare", "-n", "sh", "-ec", script)
		cmd.Env = append(os.Environ(), "GUARD="+guard, "BRIDGE="+bridge, "NUTSHELL_NETWORK_ID_FILE="+idFile)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return string(out)
	}
	// Before the first boot's network: nothing to join.
	if out := run(`ip link add br-hostonly type bridge; "$BRIDGE"; ip -o link show`); !strings.Contains(out, "no network hostonly yet") || strings.Contains(out, "brq") {
		t.Errorf("without a network ID the bridge script did something:\n%s", out)
	}
	// The ID of run 5's network (docs/nutshell.md).
	if err := os.WriteFile(idFile, []byte("d34a700f-1d23-4a50-bfe5-e209ba794feb\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := run(`ip link add br-hostonly type bridge
ip link add eth1 type veth peer name eth1-peer
nft -f "$GUARD"; nft -f "$GUARD"
"$BRIDGE"; "$BRIDGE"
echo "== brq"; ip -o link show master brqd34a700f-1d
echo "== hostonly"; ip -o link show master br-hostonly
echo "== nft"; nft list table netdev conpaas_nutshell`)
	section := func(name string) string {
		_, after, _ := strings.Cut(out, "== "+name+"\n")
		before, _, _ := strings.Cut(after, "== ")
		return before
	}
	for _, c := range []struct{ what, in, want string }{
		{"Nova's bridge holds one end of the veth pair", section("brq"), "nutshell-brq@nutshell-bro"},
		{"br-hostonly holds the other", section("hostonly"), "nutshell-bro@nutshell-brq"},
		{"the guard hooks eth1's ingress", section("nft"), `hook ingress device "eth1"`},
		{"the guard drops DHCP answers", section("nft"), "udp sport 67 udp dport 68 counter packets 0 bytes 0 drop"},
	} {
		if !strings.Contains(c.in, c.want) {
			t.Errorf("%s: no %q in\n%s", c.what, c.want, c.in)
		}
	}
	if n := strings.Count(section("brq"), "\n"); n != 1 {
		t.Errorf("Nova's bridge has %d ports after two runs, want the veth end alone:\n%s", n, section("brq"))
	}
	if n := strings.Count(out, "table netdev conpaas_nutshell {"); n != 1 {
		t.Errorf("%d guard tables after two loads, want 1:\n%s", n, out)
	}
}
