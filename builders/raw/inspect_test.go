package raw

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// listener is a socket the guest's fake agent found listening (TCP in
// LISTEN, UDP unconnected), with the process holding it.
type listener struct {
	proto string // tcp, tcp6, udp, udp6
	ip    net.IP
	port  int
	comm  string // "" when no process holds it
}

func (l listener) String() string {
	who := l.comm
	if who == "" {
		who = "no process"
	}
	return fmt.Sprintf("%s %s (%s)", l.proto, net.JoinHostPort(l.ip.String(), strconv.Itoa(l.port)), who)
}

// guestState is what the fake agent printed on the console (CPS-SOCK,
// CPS-PROC and CPS-FD lines, from /proc/net/{tcp,tcp6,udp,udp6}, /proc/PID/comm
// and /proc/PID/fd).
type guestState struct {
	listeners []listener
	procs     map[int]string // pid -> comm
}

var (
	sockLine = regexp.MustCompile(`CPS-SOCK (tcp6?|udp6?) ([0-9A-F]+):([0-9A-F]{4}) ([0-9A-F]{2}) (\d+)`)
	procLine = regexp.MustCompile(`CPS-PROC (\d+) (\S+)`)
	fdLine   = regexp.MustCompile(`CPS-FD /proc/(\d+)/fd socket:\[(\d+)\]`)
)

// parseGuestState reads the agent's lines from the console.
func parseGuestState(console string) (*guestState, error) {
	g := &guestState{procs: map[int]string{}}
	owner := map[string]string{} // socket inode -> comm
	for _, m := range procLine.FindAllStringSubmatch(console, -1) {
		pid, _ := strconv.Atoi(m[1])
		g.procs[pid] = m[2]
	}
	for _, m := range fdLine.FindAllStringSubmatch(console, -1) {
		pid, _ := strconv.Atoi(m[1])
		owner[m[2]] = g.procs[pid]
	}
	for _, m := range sockLine.FindAllStringSubmatch(console, -1) {
		proto, state := m[1], m[4]
		// /proc/net: TCP_LISTEN is 0A; an unconnected UDP socket is 07 (TCP_CLOSE).
		if (strings.HasPrefix(proto, "tcp") && state != "0A") || (strings.HasPrefix(proto, "udp") && state != "07") {
			continue
		}
		ip, err := procNetIP(m[2])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m[0], err)
		}
		port, _ := strconv.ParseUint(m[3], 16, 16)
		if m[5] == "0" {
			continue // a socket being torn down
		}
		g.listeners = append(g.listeners, listener{proto, ip, int(port), owner[m[5]]})
	}
	if len(g.procs) == 0 {
		return nil, fmt.Errorf("no CPS-PROC line on the console: the fake agent did not inspect the VM")
	}
	return g, nil
}

// procNetIP decodes an address of /proc/net/{tcp,udp}[6]: the address's
// bytes in 32-bit words, each in the kernel's (little-endian) byte order.
func procNetIP(h string) (net.IP, error) {
	b, err := hex.DecodeString(h)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return nil, fmt.Errorf("address %q is not 8 or 32 hex digits", h)
	}
	ip := make(net.IP, len(b))
	for i := 0; i < len(b); i += 4 {
		binary.BigEndian.PutUint32(ip[i:], binary.LittleEndian.Uint32(b[i:]))
	}
	return ip, nil
}

// allowedListener is what a ConPaaS VM may listen on: sshd anywhere,
// systemd-resolved's stub on the loopback only (127.0.0.53 and the
// proxy 127.0.0.54, port 53), and systemd-networkd's DHCP clients (UDP 68,
// and 546 for DHCPv6). Nothing else: no LLMNR (5355), no web server.
func allowedListener(l listener) bool {
	switch l.comm {
	case "sshd":
		return strings.HasPrefix(l.proto, "tcp") && l.port == 22
	case "systemd-resolve":
		return l.port == 53 && (l.ip.Equal(net.IPv4(127, 0, 0, 53)) || l.ip.Equal(net.IPv4(127, 0, 0, 54)))
	case "systemd-network":
		return strings.HasPrefix(l.proto, "udp") && (l.port == 68 || l.port == 546)
	}
	return false
}

// dhcpClients are the processes of the guest that run a DHCP client:
// systemd-networkd (which has one built in) and any standalone client.
func (g *guestState) dhcpClients() []string {
	var c []string
	for pid, comm := range g.procs {
		if slices.Contains([]string{"systemd-network", "dhclient", "dhclient3", "dhcpcd", "udhcpc", "pump"}, comm) {
			c = append(c, fmt.Sprintf("%s (pid %d)", comm, pid))
		}
	}
	slices.Sort(c)
	return c
}

// The parser and the rules, on lines as the fake agent prints them (the
// addresses as a bookworm kernel shows them: 127.0.0.53:53 is
// 3500007F:0035, [::]:22 is 32 zeros and 0016).
func TestGuestState(t *testing.T) {
	console := "CPS-SOCK tcp 00000000:0016 0A 100\r\n" +
		"CPS-SOCK tcp 3500007F:0035 0A 101\r\n" +
		"CPS-SOCK tcp 0F02000A:0016 01 102\r\n" + // an SSH connection, not a listener
		"CPS-SOCK tcp6 00000000000000000000000000000000:0016 0A 103\r\n" +
		"CPS-SOCK udp 00000000:14EB 07 104\r\n" +
		"CPS-SOCK udp 0F02000A:0044 07 105\r\n" +
		"CPS-SOCK tcp6 00000000000000000000000001000000:0050 0A 106\r\n" +
		"CPS-PROC 1 systemd\nCPS-PROC 200 sshd\nCPS-PROC 300 systemd-resolve\nCPS-PROC 400 systemd-network\nCPS-PROC 500 nginx\n" +
		"CPS-FD /proc/200/fd socket:[100]\nCPS-FD /proc/300/fd socket:[101]\nCPS-FD /proc/200/fd socket:[103]\n" +
		"CPS-FD /proc/300/fd socket:[104]\nCPS-FD /proc/400/fd socket:[105]\nCPS-FD /proc/500/fd socket:[106]\n"
	g, err := parseGuestState(console)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range g.listeners {
		got = append(got, fmt.Sprintf("%v %v", l, allowedListener(l)))
	}
	want := []string{
		"tcp 0.0.0.0:22 (sshd) true",
		"tcp 127.0.0.53:53 (systemd-resolve) true",
		"tcp6 [::]:22 (sshd) true",
		"udp 0.0.0.0:5355 (systemd-resolve) false", // LLMNR
		"udp 10.0.2.15:68 (systemd-network) true",
		"tcp6 [::1]:80 (nginx) false",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("listeners:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if c := g.dhcpClients(); strings.Join(c, ",") != "systemd-network (pid 400)" {
		t.Errorf("DHCP clients %q", c)
	}
	if _, err := parseGuestState("login:"); err == nil {
		t.Error("a console without the agent's lines parsed")
	}
}
