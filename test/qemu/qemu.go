// Package qemu boots a disk image in qemu-system-x86_64 under software
// emulation (TCG: no KVM needed, as on CI) and watches its serial console for
// a marker, so tests can prove that an image built by the code under test
// really boots.
package qemu

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/conpaas/cps/internal/testutil"
)

// Options of one boot.
type Options struct {
	Image     string         // raw disk image; booted with snapshot=on, never modified (unless Writable)
	Format    string         // "raw" (default), "vmdk", "qcow2"
	UEFI      bool           // boot with OVMF instead of SeaBIOS
	MemoryMiB int            // default 1024
	Marker    *regexp.Regexp // the line that means "booted"
	Timeout   time.Duration  // default 10 minutes
	// Console, when set, receives the serial console as it comes (e.g. a
	// test's log writer).
	Console io.Writer
	// Accel is "tcg" (default) or "kvm".
	Accel string
	// Drives are more raw disks (a config drive, a data disk), attached
	// after Image with snapshot=on.
	Drives []string
	// CPUs is -smp (default 1).
	CPUs int
	// NICs are the VM's network cards, each on its own restricted user
	// network; none given means one card with no forwards. QEMU network
	// options in Args are refused: every card goes through NIC.
	NICs []NIC
	// Args are appended to QEMU's command line.
	Args []string
	// Machine is -machine's type: "q35" (default) or "pc" (i440FX, with
	// an ISA floppy controller, as many clouds' KVM guests have).
	Machine string
	// Reboot lets the guest reboot in the same QEMU (the disk keeps what
	// the first boot wrote); without it QEMU exits when the guest reboots.
	Reboot bool
	// Writable boots Image without snapshot=on, so what the guest writes
	// stays: for a qcow2 overlay a long test resumes from (the Nutshell's
	// first boot), never for a built image under test.
	Writable bool
	// Sandbox runs QEMU in a network namespace with nothing but loopback;
	// required by an Unrestricted NIC.
	Sandbox *Sandbox
}

// NIC is one virtio network card on QEMU's user network with restrict=on
// and IPv6 off: the guest gets an address, a route and (without a DNS
// server) nothing else by DHCP, and reaches nothing outside QEMU, neither
// the host, nor its resolver, nor its network, nor a cloud metadata
// address, except the Forwards, each relayed to a server the test runs.
type NIC struct {
	// Net is the guest network in CIDR notation (QEMU's default
	// 10.0.2.0/24 when empty). A test serving its own metadata service
	// uses 169.254.0.0/16 and forwards 169.254.169.254:80.
	Net string
	// Host is the gateway's address in Net (QEMU's default: .2).
	Host string
	// Forwards are the only addresses the guest reaches.
	Forwards []Forward
	// Unrestricted drops restrict=on (and keeps QEMU's IPv6): the guest
	// reaches its host's loopback through the gateway and whatever that
	// host reaches. Only for the test that proves a Canary detects such a
	// hole, never for a boot that tests an image, and only in a Sandbox
	// (Options.Sandbox), whose host has nothing but loopback.
	Unrestricted bool
	// HostForwards let the test reach servers in the guest (restrict=on
	// leaves explicit forwards working): each listens on the host's
	// loopback and relays to a guest address.
	HostForwards []HostForward
}

// HostForward relays TCP connections to Host ("127.0.0.1:port", on the
// host) to Guest ("address:port" in the NIC's network, the guest's own
// address there).
type HostForward struct{ Host, Guest string }

// Forward relays each TCP connection the guest opens to Guest (an
// "address:port" inside the NIC's network, not its gateway .2 nor its DNS
// .3) to Host, a server the test started on the loopback
// ("127.0.0.1:port"). QEMU runs one `nc -N` (netcat-openbsd) per
// connection: a guestfwd to a socket chardev would carry one connection
// only.
type Forward struct{ Guest, Host string }

// OVMF firmware from Debian's ovmf package.
const ovmfCode = "/usr/share/OVMF/OVMF_CODE.fd"

// Result is what the console showed.
type Result struct {
	Line    string        // the line that matched
	Console string        // everything up to it
	Elapsed time.Duration // from start to the marker
}

// Boot starts the VM and returns when the marker appears (the VM is then
// stopped), the timeout passes, the VM exits, or ctx ends. On failure the
// error carries the end of the console output.
func Boot(ctx context.Context, o Options) (*Result, error) {
	if o.Marker == nil {
		return nil, errors.New("qemu: no marker to wait for")
	}
	vm, err := Start(ctx, o)
	if err != nil {
		return nil, err
	}
	defer vm.Stop()
	return vm.Wait(ctx, o.Marker, 0)
}

// VM is a running QEMU, for tests that go on using the guest after its
// marker (through HostForwards).
type VM struct {
	cancel  context.CancelFunc
	ctx     context.Context
	timeout time.Duration
	start   time.Time
	exited  chan struct{}
	exitErr error
	stderr  *bytes.Buffer

	mu      sync.Mutex
	console strings.Builder
	changed chan struct{} // closed and replaced whenever console grows
}

// Start boots the VM and returns at once; o.Marker is not used. The VM
// stops after o.Timeout (default 10 minutes), when ctx ends, or on Stop.
func Start(ctx context.Context, o Options) (*VM, error) {
	if o.MemoryMiB == 0 {
		o.MemoryMiB = 1024
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Minute
	}
	if o.Format == "" {
		o.Format = "raw"
	}
	if o.CPUs == 0 {
		o.CPUs = 1
	}
	if o.Accel == "" {
		o.Accel = "tcg"
	}
	if _, err := os.Stat(o.Image); err != nil {
		return nil, fmt.Errorf("qemu: %w", err)
	}

	if o.Machine == "" {
		o.Machine = "q35"
	}
	if o.Machine != "q35" && o.Machine != "pc" {
		return nil, fmt.Errorf("qemu: machine %q: use q35 or pc", o.Machine)
	}
	args := []string{
		"-machine", o.Machine + ",accel=" + o.Accel, "-m", fmt.Sprint(o.MemoryMiB), "-smp", fmt.Sprint(o.CPUs),
		"-nographic", "-serial", "stdio", "-monitor", "none",
		"-drive", fmt.Sprintf("file=%s,format=%s,if=virtio,snapshot=%s", o.Image, o.Format, map[bool]string{false: "on", true: "off"}[o.Writable]),
	}
	if !o.Reboot {
		args = append(args, "-no-reboot")
	}
	for _, n := range o.NICs {
		if n.Unrestricted && o.Sandbox == nil {
			return nil, errors.New("qemu: an unrestricted NIC runs only in a Sandbox (Options.Sandbox), so the guest reaches nothing beyond its loopback")
		}
	}
	nics, err := nicArgs(o.NICs, o.Args)
	if err != nil {
		return nil, err
	}
	args = append(args, nics...)
	for _, d := range o.Drives {
		if _, err := os.Stat(d); err != nil {
			return nil, fmt.Errorf("qemu: %w", err)
		}
		args = append(args, "-drive", fmt.Sprintf("file=%s,format=raw,if=virtio,snapshot=on", d))
	}
	if o.Accel == "tcg" {
		args = append(args, "-cpu", "max")
	}
	if o.UEFI {
		if _, err := os.Stat(ovmfCode); err != nil {
			return nil, fmt.Errorf("qemu: UEFI boot needs %s (apt-get install ovmf)", ovmfCode)
		}
		args = append(args, "-drive", "if=pflash,format=raw,readonly=on,file="+ovmfCode)
	}
	args = append(args, o.Args...)
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	v := &VM{cancel: cancel, ctx: ctx, timeout: o.Timeout, exited: make(chan struct{}), stderr: &bytes.Buffer{}, changed: make(chan struct{})}
	cmd.Stderr = v.stderr
	v.start = time.Now()
	start := cmd.Start
	if o.Sandbox != nil {
		start = func() error { return o.Sandbox.do(cmd.Start) }
	}
	if err := start(); err != nil {
		cancel()
		if errors.Is(err, exec.ErrNotFound) {
			return nil, fmt.Errorf("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
		}
		return nil, fmt.Errorf("qemu: %w", err)
	}
	read := make(chan struct{})
	go func() {
		defer close(read)
		r := bufio.NewReader(stdout)
		for {
			line, err := r.ReadString('\n')
			if line != "" {
				v.mu.Lock()
				v.console.WriteString(line)
				close(v.changed)
				v.changed = make(chan struct{})
				v.mu.Unlock()
				if o.Console != nil {
					o.Console.Write([]byte(line))
				}
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		<-read
		v.exitErr = cmd.Wait()
		close(v.exited)
	}()
	return v, nil
}

// Console is everything the serial console showed so far.
func (v *VM) Console() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.console.String()
}

// Wait returns when a line matching marker has appeared on the console
// (since the boot: a marker already there counts), the VM exits, ctx ends,
// timeout passes (0: only the VM's own timeout). On failure the error
// carries the end of the console output.
func (v *VM) Wait(ctx context.Context, marker *regexp.Regexp, timeout time.Duration) (*Result, error) {
	var tc <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		tc = t.C
	}
	for {
		v.mu.Lock()
		all := v.console.String()
		changed := v.changed
		v.mu.Unlock()
		// Only whole lines: the last one may still be coming.
		whole := all[:strings.LastIndexByte(all, '\n')+1]
		for _, line := range strings.SplitAfter(whole, "\n") {
			if line != "" && marker.MatchString(line) {
				end := strings.Index(all, line) + len(line)
				return &Result{Line: strings.TrimRight(line, "\r\n"), Console: all[:end], Elapsed: time.Since(v.start)}, nil
			}
		}
		select {
		case <-changed:
		case <-v.exited:
			// The reader is done: nothing more comes.
			if c := v.Console(); c != all {
				continue
			}
			if v.ctx.Err() != nil {
				return nil, fmt.Errorf("no %q on the serial console within %s: the image did not boot\nconsole:\n%s", marker, v.timeout, testutil.Tail(all, 40))
			}
			return nil, fmt.Errorf("qemu exited before %q appeared (%v): %s\nconsole:\n%s", marker, v.exitErr, strings.TrimSpace(v.stderr.String()), testutil.Tail(all, 40))
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for %q on the serial console: %w\nconsole:\n%s", marker, ctx.Err(), testutil.Tail(all, 40))
		case <-tc:
			return nil, fmt.Errorf("no %q on the serial console within %s\nconsole:\n%s", marker, timeout, testutil.Tail(all, 40))
		}
	}
}

// Stop ends the VM and waits for QEMU to exit.
func (v *VM) Stop() {
	v.cancel()
	<-v.exited
}

// nicArgs are the -nic options of the VM's cards. Args may add no network
// of their own: a card outside NIC would not be restricted.
func nicArgs(nics []NIC, extra []string) ([]string, error) {
	for _, a := range extra {
		switch strings.TrimLeft(a, "-") {
		case "nic", "netdev", "net":
			return nil, fmt.Errorf("qemu: %s in Args would bypass the restricted network; use Options.NICs", a)
		}
	}
	if len(nics) == 0 {
		nics = []NIC{{}}
	}
	var args []string
	for _, n := range nics {
		opt := "user,model=virtio-net-pci,restrict=on,ipv6=off"
		if n.Unrestricted {
			if len(n.Forwards) > 0 {
				return nil, errors.New("qemu: an unrestricted NIC needs no forwards (the guest reaches everything)")
			}
			opt = "user,model=virtio-net-pci"
		}
		var network *net.IPNet
		if n.Net != "" {
			var err error
			if _, network, err = net.ParseCIDR(n.Net); err != nil {
				return nil, fmt.Errorf("qemu: NIC network %q: %w", n.Net, err)
			}
			opt += ",net=" + n.Net
		}
		if n.Host != "" {
			opt += ",host=" + n.Host
		}
		for _, f := range n.Forwards {
			gh, gp, err := net.SplitHostPort(f.Guest)
			if err != nil {
				return nil, fmt.Errorf("qemu: forward guest address %q: %w", f.Guest, err)
			}
			g := net.ParseIP(gh)
			if g == nil || g.To4() == nil {
				return nil, fmt.Errorf("qemu: forward guest address %q is not an IPv4 address", f.Guest)
			}
			if network != nil && !network.Contains(g) {
				return nil, fmt.Errorf("qemu: forward guest address %s is outside the NIC's network %s", gh, n.Net)
			}
			hh, hp, err := net.SplitHostPort(f.Host)
			if err != nil {
				return nil, fmt.Errorf("qemu: forward host address %q: %w", f.Host, err)
			}
			if ip := net.ParseIP(hh); ip == nil || !ip.IsLoopback() {
				return nil, fmt.Errorf("qemu: forward to %s: tests serve on the loopback only", f.Host)
			}
			if _, err := exec.LookPath("nc"); err != nil {
				return nil, errors.New("qemu: forwards need nc (apt-get install netcat-openbsd)")
			}
			opt += fmt.Sprintf(",guestfwd=tcp:%s:%s-cmd:nc -N %s %s", gh, gp, hh, hp)
		}
		for _, f := range n.HostForwards {
			hh, hp, err := net.SplitHostPort(f.Host)
			if err != nil {
				return nil, fmt.Errorf("qemu: host forward %q: %w", f.Host, err)
			}
			if ip := net.ParseIP(hh); ip == nil || ip.To4() == nil || !ip.IsLoopback() {
				return nil, fmt.Errorf("qemu: host forward %s: tests listen on 127.0.0.1 only", f.Host)
			}
			gh, gp, err := net.SplitHostPort(f.Guest)
			if err != nil {
				return nil, fmt.Errorf("qemu: host forward guest address %q: %w", f.Guest, err)
			}
			if g := net.ParseIP(gh); g == nil || g.To4() == nil || network != nil && !network.Contains(g) {
				return nil, fmt.Errorf("qemu: host forward guest address %s is not an IPv4 address in the NIC's network", gh)
			}
			opt += fmt.Sprintf(",hostfwd=tcp:%s:%s-%s:%s", hh, hp, gh, gp)
		}
		args = append(args, "-nic", opt)
	}
	return args, nil
}
