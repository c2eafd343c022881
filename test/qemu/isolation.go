package qemu

import (
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// Canary proves a guest did not get out of its restricted network. It
// listens for TCP and UDP on one port of 127.0.0.1 (and ::1 when the host
// has it): QEMU's unrestricted user network hands the guest's connections
// to its gateway (10.0.2.2, fec0::2) to these loopback addresses, so
// anything that arrives here came through a hole. Probe is the guest's
// side: a script that tries the gateway, QEMU's DNS, the cloud metadata
// address and the test's own forwards, and prints one line per try.
type Canary struct {
	Port int

	mu   sync.Mutex
	hits []string
}

// NewCanary starts the listeners; they stop when the test ends.
func NewCanary(t testing.TB) *Canary {
	t.Helper()
	return newCanary(t)
}

// NewCanaryIn starts the listeners on the loopback of a Sandbox, for the
// VM on an unrestricted network that runs there.
func NewCanaryIn(t testing.TB, s *Sandbox) *Canary {
	t.Helper()
	var c *Canary
	if err := s.do(func() error { c = newCanary(t); return nil }); err != nil {
		t.Fatal(err)
	}
	return c
}

func newCanary(t testing.TB) *Canary {
	t.Helper()
	c := &Canary{}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.Port = tl.Addr().(*net.TCPAddr).Port
	listeners := []net.Listener{tl}
	if l6, err := net.Listen("tcp", fmt.Sprintf("[::1]:%d", c.Port)); err == nil {
		listeners = append(listeners, l6)
	}
	var packets []net.PacketConn
	for _, a := range []string{"127.0.0.1", "[::1]"} {
		if p, err := net.ListenPacket("udp", fmt.Sprintf("%s:%d", a, c.Port)); err == nil {
			packets = append(packets, p)
		} else if a == "127.0.0.1" {
			t.Fatal(err)
		}
	}
	for _, l := range listeners {
		go func() {
			for {
				conn, err := l.Accept()
				if err != nil {
					return
				}
				c.hit("tcp connection from " + conn.RemoteAddr().String() + " to " + conn.LocalAddr().String())
				conn.Close()
			}
		}()
	}
	for _, p := range packets {
		go func() {
			buf := make([]byte, 2048)
			for {
				n, from, err := p.ReadFrom(buf)
				if err != nil {
					return
				}
				c.hit(fmt.Sprintf("udp datagram %q from %s to %s", buf[:n], from, p.LocalAddr()))
			}
		}()
	}
	t.Cleanup(func() {
		for _, l := range listeners {
			l.Close()
		}
		for _, p := range packets {
			p.Close()
		}
	})
	return c
}

func (c *Canary) hit(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hits = append(c.hits, s)
}

// Hits is what reached the canary (nothing, when the guest was isolated).
func (c *Canary) Hits() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.hits...)
}

// Probe is a bash snippet for the guest (run as root, e.g. from user
// data) that tries to leave its network and prints one line per try on
// the serial console: "CPS-PROBE <what> reached|blocked". allowed are the
// guest addresses ("10.0.2.100:443") of the VM's forwards: they must be
// reached, which shows the probe's own network works. Without restrict=on
// the gateway tries reach the canary and QEMU's resolver answers.
func (c *Canary) Probe(allowed ...string) string {
	var b strings.Builder
	b.WriteString(probeFunc)
	tcp := func(host, port string) {
		fmt.Fprintf(&b, "cps_probe 'tcp %s:%s' bash -c 'exec 3<>/dev/tcp/%s/%s'\n", host, port, host, port)
	}
	port := fmt.Sprint(c.Port)
	for _, h := range []string{"10.0.2.2", "fec0::2"} {
		tcp(h, port)
		// A datagram to the gateway: the canary is the judge.
		fmt.Fprintf(&b, "cps_probe 'udp %s:%s' bash -c 'echo cps-probe > /dev/udp/%s/%s'\n", h, port, h, port)
	}
	tcp("10.0.2.3", "53")        // QEMU's resolver, over TCP
	tcp("169.254.169.254", "80") // a cloud's metadata service
	tcp("fec0::3", "53")         // QEMU's IPv6 resolver
	b.WriteString("cps_probe 'dns deb.debian.org' getent ahosts deb.debian.org\n")
	for _, a := range allowed {
		h, p, _ := net.SplitHostPort(a)
		tcp(h, p)
	}
	return b.String()
}

// GatewayProbe is the part of Probe whose tries can only land on the
// canary (TCP and UDP to the gateway, 10.0.2.2 and fec0::2, at the
// canary's port), for a guest on an unrestricted network: it shows the
// canary sees a hole without the guest reaching anything beyond this
// host's loopback.
func (c *Canary) GatewayProbe() string {
	var b strings.Builder
	b.WriteString(probeFunc)
	port := fmt.Sprint(c.Port)
	for _, h := range []string{"10.0.2.2", "fec0::2"} {
		fmt.Fprintf(&b, "cps_probe 'tcp %s:%s' bash -c 'exec 3<>/dev/tcp/%s/%s'\n", h, port, h, port)
		fmt.Fprintf(&b, "cps_probe 'udp %s:%s' bash -c 'echo cps-probe > /dev/udp/%s/%s'\n", h, port, h, port)
	}
	return b.String()
}

const probeFunc = `cps_probe() { # WHAT COMMAND...
	local what=$1; shift
	if timeout 15 "$@" >/dev/null 2>&1; then r=reached; else r=blocked; fi
	echo "CPS-PROBE $what $r" > /dev/ttyS0
}
`

var probeLine = regexp.MustCompile(`CPS-PROBE (\S+ \S+) (reached|blocked)`)

// Check returns what the guest reached beyond the allowed forwards, what
// the canary received, and allowed forwards the guest did not reach; all
// empty means the guest was isolated and the probe really ran.
func (c *Canary) Check(console string, allowed ...string) []string {
	ok := map[string]bool{}
	for _, a := range allowed {
		ok["tcp "+a] = false
	}
	var bad []string
	lines := probeLine.FindAllStringSubmatch(console, -1)
	if len(lines) == 0 {
		return []string{"no CPS-PROBE line on the console: the probe did not run"}
	}
	for _, m := range lines {
		what, reached := m[1], m[2] == "reached"
		if _, fwd := ok[what]; fwd {
			ok[what] = ok[what] || reached
		} else if reached && !strings.HasPrefix(what, "udp ") { // sending always works; the canary tells
			bad = append(bad, "the guest reached "+what)
		}
	}
	for what, reached := range ok {
		if !reached {
			bad = append(bad, "the guest did not reach its forward "+strings.TrimPrefix(what, "tcp ")+" (the probe's own network is broken)")
		}
	}
	for _, h := range c.Hits() {
		bad = append(bad, "the canary got a "+h)
	}
	return bad
}
