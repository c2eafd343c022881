// Package compute starts, finds and stops the VMs of ConPaaS managers and
// agents, and their volumes, on EC2 (aws-sdk-go-v2), OpenStack
// (gophercloud) and an in-process "dummy" cloud for tests (the original
// director's DRIVER = dummy), and answers the questions `cpsdirector
// check` asks a cloud: are the credentials accepted, what time does the
// endpoint think it is, does the image exist, which ports does the
// security group open.
package compute

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/conpaas/cps/clouds/awsaccess"
	"github.com/conpaas/cps/clouds/osauth"
)

// Ports must be open (TCP, inbound) on every ConPaaS VM, from the seeds'
// "Security Group" section.
var Ports = []int{
	443, 5555, // director, managers, agents
	80, 8000, 8080, 9000, // web hosting
	3306, 4444, 4567, 4568, // MySQL with Galera
	32636, 32638, 32640, // XtreemFS
	22, 6121, 6122, 6123, 6130, 8081, // Flink
}

// Config selects and authenticates a cloud.
type Config struct {
	Driver string // "ec2", "openstack" or "dummy"
	// AWS is the EC2 access (region, keys, endpoint override): the
	// access config cpsimage's ec2 targets use too.
	AWS awsaccess.Config
	// OpenStack is the Keystone authentication and region, as for
	// cpsimage's glance target.
	OpenStack osauth.Config
	// Network is the OpenStack network (id or name) servers are attached
	// to; empty lets Nova pick. FloatingIP associates a floating address
	// with each server once it is ACTIVE (AUTO_ASSIGN_FLOATING_IP = false:
	// Neutron does not do it by itself).
	Network    string
	FloatingIP bool
	// HTTPClient is used for every call (tests pass one trusting a test CA);
	// nil means a default client with a timeout.
	HTTPClient *http.Client
}

// StartRequest describes one VM.
type StartRequest struct {
	Name          string
	ImageID       string
	InstanceType  string // EC2 instance type or OpenStack flavor name/id
	SecurityGroup string
	KeyName       string
	UserData      []byte // raw; the drivers base64-encode it
	Tags          map[string]string
	// Token makes the request idempotent where the cloud supports it
	// (EC2's ClientToken): a retried Start returns the same VM.
	Token string
}

// Instance is a VM.
type Instance struct {
	ID    string
	State string // the cloud's word: pending/running (EC2), BUILD/ACTIVE (Nova)
	// PublicIP is the address ConPaaS talks to (EC2's public address, an
	// OpenStack floating address, else the fixed one); PrivateIP the
	// cloud-internal one. Both are empty until the cloud assigned them.
	PublicIP, PrivateIP string
	Tags                map[string]string
}

// Running reports a VM the cloud says is up (EC2 running, Nova ACTIVE).
func (i Instance) Running() bool {
	s := strings.ToLower(i.State)
	return s == "running" || s == "active"
}

// Failed reports a VM that will never run.
func (i Instance) Failed() bool {
	switch strings.ToLower(i.State) {
	case "error", "terminated", "shutting-down", "deleted", "soft_deleted":
		return true
	}
	return false
}

// PortRange is one inbound rule.
type PortRange struct {
	Protocol string // tcp, udp, icmp, or "-1"/"" for all
	From, To int
}

// Cloud is one configured cloud.
type Cloud interface {
	Start(ctx context.Context, req StartRequest) (Instance, error)
	Stop(ctx context.Context, id string) error
	// Describe returns ErrNotFound for a VM that no longer exists.
	Describe(ctx context.Context, id string) (Instance, error)
	// List returns the live VMs carrying every tag of tags.
	List(ctx context.Context, tags map[string]string) ([]Instance, error)
	// CreateVolume makes a volume of sizeGiB next to the VM near (EC2
	// volumes live in one availability zone) and returns its id.
	CreateVolume(ctx context.Context, sizeGiB int, name, near string) (string, error)
	AttachVolume(ctx context.Context, volume, instance, device string) error
	DetachVolume(ctx context.Context, volume string) error
	DeleteVolume(ctx context.Context, volume string) error
	// Probe authenticates (EC2 DescribeRegions, Keystone token) and returns
	// the endpoint's clock from its Date header.
	Probe(ctx context.Context) (time.Time, error)
	// ImageExists returns ErrNotFound when the cloud does not know id.
	ImageExists(ctx context.Context, id string) error
	// SecurityGroupRules returns the inbound rules of the named group, or
	// ErrNotFound.
	SecurityGroupRules(ctx context.Context, name string) ([]PortRange, error)
	// EnsureSecurityGroup creates the group if missing and opens ports.
	EnsureSecurityGroup(ctx context.Context, name string, ports []int) error
}

// ErrNotFound is returned for a missing image, instance or group.
var ErrNotFound = errors.New("not found")

// ErrAuth wraps credential rejections so callers can say "fix USER/PASSWORD".
var ErrAuth = errors.New("credentials rejected")

// Open returns the Cloud for cfg without contacting it.
func Open(cfg Config) (Cloud, error) {
	hc := withDateRecorder(cfg.HTTPClient)
	switch cfg.Driver {
	case "ec2":
		return openEC2(cfg, hc)
	case "openstack":
		return openOpenStack(cfg, hc)
	case "dummy":
		return openDummy(cfg), nil
	}
	return nil, fmt.Errorf("unknown cloud driver %q (ec2, openstack or dummy)", cfg.Driver)
}

// MissingPorts returns the ports of want that no TCP rule opens, in the
// order of want (the seeds' order groups them by service).
func MissingPorts(rules []PortRange, want []int) []int {
	var miss []int
	for _, p := range want {
		ok := false
		for _, r := range rules {
			if (r.Protocol == "tcp" || r.Protocol == "6" || r.Protocol == "-1" || r.Protocol == "") && r.From <= p && p <= r.To {
				ok = true
				break
			}
		}
		if !ok {
			miss = append(miss, p)
		}
	}
	return miss
}

// dateRecorder keeps the Date header of the last response, for the clock
// skew check (EC2 rejects requests signed more than 5 minutes off; Keystone
// tokens expire early or late for the same reason).
type dateRecorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	last time.Time
}

func (d *dateRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := d.next.RoundTrip(r)
	if err == nil {
		if t, perr := http.ParseTime(resp.Header.Get("Date")); perr == nil {
			d.mu.Lock()
			d.last = t
			d.mu.Unlock()
		}
	}
	return resp, err
}

func (d *dateRecorder) Last() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last
}

type recordingClient struct {
	*http.Client
	rec *dateRecorder
}

func withDateRecorder(hc *http.Client) recordingClient {
	var base http.Client
	if hc != nil {
		base = *hc
	} else {
		base.Timeout = 60 * time.Second
	}
	next := base.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	rec := &dateRecorder{next: next}
	base.Transport = rec
	return recordingClient{Client: &base, rec: rec}
}
