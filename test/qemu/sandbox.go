package qemu

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// Sandbox is a network namespace of the test's own holding nothing but a
// loopback interface. A VM on an unrestricted user network (NIC.
// Unrestricted) runs only inside one, with its Canary: QEMU's slirp then
// hands the guest's connections to the namespace's loopback, where the
// canary listens, and has no route to anything else, so even a guest that
// is let out of restrict=on (to prove the canary sees holes) never reaches
// the host's network, its resolver or a cloud metadata address.
type Sandbox struct {
	name string
}

var sandboxes atomic.Int64

// NewSandbox creates the namespace (ip netns; needs root, as the boot
// tests do); it is deleted when the test ends.
func NewSandbox(t testing.TB) *Sandbox {
	t.Helper()
	s := &Sandbox{name: fmt.Sprintf("cps-qemu-%d-%d", os.Getpid(), sandboxes.Add(1))}
	if out, err := exec.Command("ip", "netns", "add", s.name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", s.name, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", s.name).Run() })
	if out, err := exec.Command("ip", "-n", s.name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s link set lo up: %v: %s", s.name, err, out)
	}
	return s
}

// do runs f on an OS thread switched into the namespace: sockets f opens
// and processes it starts stay in the namespace after the thread switches
// back. A thread that cannot switch back is never given to other
// goroutines (it ends with this one).
func (s *Sandbox) do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer self.Close()
		ns, err := os.Open("/run/netns/" + s.name)
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", s.name, err)
			return
		}
		err = f()
		if unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}
