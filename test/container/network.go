package container

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Addresses on the container's network, as Neutron lays out a subnet
// without a router (the Nutshell's hostonly network): the DHCP server's
// port serves the metadata address through a host route it hands out
// (DHCP option 121), because enable_isolated_metadata is on.
const (
	Subnet       = "192.168.56.0/24"
	DHCPAddr     = "192.168.56.2"
	MetadataAddr = "169.254.169.254"
	// The pool the container's address comes from (Neutron's allocation
	// pool in the Nutshell).
	poolStart, poolEnd = "192.168.56.20", "192.168.56.99"
)

// Network is two network namespaces joined by a veth pair: the
// container's (its eth0) and the test's, which holds the DHCP server, the
// metadata address and the addresses given to NewNetwork, where the test
// serves with Listen.
type Network struct {
	// Container is the path of the container's namespace.
	Container string
	server    string
	names     []string
	dnsmasq   *exec.Cmd
	done      chan struct{}
	log       *syncBuffer
}

var seq atomic.Int32

// NewNetwork makes the namespaces, the veth pair and starts dnsmasq.
// addrs are more addresses of the test's side on Subnet (e.g. a director
// at 192.168.56.10). dir holds dnsmasq's lease file. Close undoes it all.
func NewNetwork(ctx context.Context, dir string, addrs ...string) (*Network, error) {
	for _, tool := range []string{"ip", "dnsmasq"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s is not installed (apt-get install iproute2 dnsmasq-base)", tool)
		}
	}
	base := fmt.Sprintf("cps%d-%d", os.Getpid(), seq.Add(1))
	n := &Network{server: base + "-s", done: make(chan struct{}), log: &syncBuffer{}}
	c := base + "-c"
	n.Container = "/run/netns/" + c
	steps := [][]string{
		{"netns", "add", c},
		{"netns", "add", n.server},
		{"link", "add", "eth0", "netns", c, "type", "veth", "peer", "name", "ctr0", "netns", n.server},
		{"-n", n.server, "link", "set", "lo", "up"},
		{"-n", n.server, "link", "set", "ctr0", "up"},
		{"-n", n.server, "addr", "add", DHCPAddr + "/24", "dev", "ctr0"},
		{"-n", n.server, "addr", "add", MetadataAddr + "/32", "dev", "ctr0"},
	}
	for _, a := range addrs {
		steps = append(steps, []string{"-n", n.server, "addr", "add", a + "/32", "dev", "ctr0"})
	}
	for _, s := range steps {
		if s[0] == "netns" && s[1] == "add" {
			n.names = append(n.names, s[2])
		}
		if out, err := exec.CommandContext(ctx, "ip", s...).CombinedOutput(); err != nil {
			n.Close()
			return nil, fmt.Errorf("ip %s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	// Neutron's dnsmasq, in short: an address from the pool and the host
	// route to the metadata address; no DNS, no default route.
	n.dnsmasq = exec.Command("ip", "netns", "exec", n.server, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
		"--port=0", "--no-resolv", "--no-hosts", "--interface=ctr0", "--bind-interfaces", "--user=root", "--pid-file",
		"--dhcp-range="+poolStart+","+poolEnd+",255.255.255.0,10m",
		"--dhcp-option=121,"+MetadataAddr+"/32,"+DHCPAddr,
		"--dhcp-leasefile="+filepath.Join(dir, "dnsmasq.leases"), "--log-dhcp", "--log-facility=-")
	n.dnsmasq.Stdout, n.dnsmasq.Stderr = n.log, n.log
	if err := n.dnsmasq.Start(); err != nil {
		n.Close()
		return nil, fmt.Errorf("dnsmasq: %w", err)
	}
	go func() { n.dnsmasq.Wait(); close(n.done) }()
	return n, nil
}

// DHCPLog is what dnsmasq logged.
func (n *Network) DHCPLog() string { return n.log.String() }

// Listen listens on addr ("IP:port") in the test's namespace: only the
// container reaches it.
func (n *Network) Listen(addr string) (net.Listener, error) {
	type result struct {
		l   net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// A thread of its own switches namespaces and is never given back
		// to other goroutines if it cannot switch back.
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer self.Close()
		ns, err := os.Open("/run/netns/" + n.server)
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{nil, fmt.Errorf("setns: %w", err)}
			return
		}
		l, err := net.Listen("tcp", addr)
		if unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		ch <- result{l, err}
	}()
	r := <-ch
	return r.l, r.err
}

// Close stops dnsmasq and deletes the namespaces (and the veth pair with
// them).
func (n *Network) Close() error {
	if n.dnsmasq != nil && n.dnsmasq.Process != nil {
		n.dnsmasq.Process.Kill()
		select {
		case <-n.done:
		case <-time.After(5 * time.Second):
		}
	}
	var errs []error
	for _, name := range n.names {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip netns del %s: %v: %s", name, err, out))
		}
	}
	n.names = nil
	return errors.Join(errs...)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
