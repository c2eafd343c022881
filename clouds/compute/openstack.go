package compute

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/keypairs"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/secgroups"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
)

type osCloud struct {
	cfg Config
	hc  recordingClient

	mu      sync.Mutex
	compute *gophercloud.ServiceClient
	image   *gophercloud.ServiceClient
}

func openOpenStack(cfg Config, hc recordingClient) (Cloud, error) {
	if cfg.AuthURL == "" || cfg.Username == "" || cfg.Project == "" {
		return nil, errors.New("openstack: auth URL, user and project are required")
	}
	return &osCloud{cfg: cfg, hc: hc}, nil
}

func (o *osCloud) authOptions() gophercloud.AuthOptions {
	return gophercloud.AuthOptions{
		IdentityEndpoint: o.cfg.AuthURL,
		Username:         o.cfg.Username,
		Password:         o.cfg.Password,
		TenantName:       o.cfg.Project,
		DomainName:       o.cfg.Domain,
		// Long-running director: fetch a new token when this one expires.
		AllowReauth: true,
	}
}

// clients authenticates once (lazily, so serve can start without the
// cloud) and returns the compute and image service clients.
func (o *osCloud) clients(ctx context.Context) (*gophercloud.ServiceClient, *gophercloud.ServiceClient, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.compute != nil {
		return o.compute, o.image, nil
	}
	p, err := openstack.NewClient(o.cfg.AuthURL)
	if err != nil {
		return nil, nil, fmt.Errorf("openstack auth URL %s: %w", o.cfg.AuthURL, err)
	}
	p.HTTPClient = *o.hc.Client
	if err := openstack.Authenticate(ctx, p, o.authOptions()); err != nil {
		return nil, nil, osErr("authenticate", err)
	}
	eo := gophercloud.EndpointOpts{Region: o.cfg.Region}
	c, err := openstack.NewComputeV2(p, eo)
	if err != nil {
		return nil, nil, fmt.Errorf("openstack: no compute endpoint in the Keystone catalogue (region %q): %w", o.cfg.Region, err)
	}
	im, err := openstack.NewImageV2(p, eo)
	if err != nil {
		return nil, nil, fmt.Errorf("openstack: no image endpoint in the Keystone catalogue (region %q): %w", o.cfg.Region, err)
	}
	o.compute, o.image = c, im
	return c, im, nil
}

func osErr(op string, err error) error {
	switch {
	case gophercloud.ResponseCodeIs(err, http.StatusUnauthorized), gophercloud.ResponseCodeIs(err, http.StatusForbidden):
		return fmt.Errorf("openstack %s: %w: %v", op, ErrAuth, err)
	case gophercloud.ResponseCodeIs(err, http.StatusNotFound):
		return fmt.Errorf("openstack %s: %w", op, ErrNotFound)
	}
	return fmt.Errorf("openstack %s: %w", op, err)
}

// flavorID accepts a flavor name (as in director.cfg) or id.
func (o *osCloud) flavorID(ctx context.Context, c *gophercloud.ServiceClient, nameOrID string) (string, error) {
	pages, err := flavors.ListDetail(c, flavors.ListOpts{}).AllPages(ctx)
	if err != nil {
		return "", osErr("list flavors", err)
	}
	all, err := flavors.ExtractFlavors(pages)
	if err != nil {
		return "", err
	}
	var names []string
	for _, f := range all {
		if f.ID == nameOrID || f.Name == nameOrID {
			return f.ID, nil
		}
		names = append(names, f.Name)
	}
	sort.Strings(names)
	return "", fmt.Errorf("openstack flavor %q: %w (available: %v)", nameOrID, ErrNotFound, names)
}

func (o *osCloud) Start(ctx context.Context, req StartRequest) (Instance, error) {
	c, _, err := o.clients(ctx)
	if err != nil {
		return Instance{}, err
	}
	fid, err := o.flavorID(ctx, c, req.InstanceType)
	if err != nil {
		return Instance{}, err
	}
	opts := keypairs.CreateOptsExt{
		CreateOptsBuilder: servers.CreateOpts{
			Name:           req.Name,
			ImageRef:       req.ImageID,
			FlavorRef:      fid,
			SecurityGroups: []string{req.SecurityGroup},
			UserData:       req.UserData,
			Metadata:       req.Tags,
		},
		KeyName: req.KeyName,
	}
	s, err := servers.Create(ctx, c, opts, nil).Extract()
	if err != nil {
		return Instance{}, osErr("servers.Create", err)
	}
	return Instance{ID: s.ID, State: s.Status}, nil
}

func (o *osCloud) Stop(ctx context.Context, id string) error {
	c, _, err := o.clients(ctx)
	if err != nil {
		return err
	}
	if err := servers.Delete(ctx, c, id).ExtractErr(); err != nil {
		return osErr("servers.Delete "+id, err)
	}
	return nil
}

func (o *osCloud) Describe(ctx context.Context, id string) (Instance, error) {
	c, _, err := o.clients(ctx)
	if err != nil {
		return Instance{}, err
	}
	s, err := servers.Get(ctx, c, id).Extract()
	if err != nil {
		return Instance{}, osErr("servers.Get "+id, err)
	}
	in := Instance{ID: s.ID, State: s.Status, Address: s.AccessIPv4}
	if in.Address == "" {
		// Prefer a floating address: ConPaaS talks to VMs on public IPs.
		for _, nets := range s.Addresses {
			l, _ := nets.([]any)
			for _, a := range l {
				m, _ := a.(map[string]any)
				if addr, _ := m["addr"].(string); addr != "" && (in.Address == "" || m["OS-EXT-IPS:type"] == "floating") {
					in.Address = addr
				}
			}
		}
	}
	return in, nil
}

func (o *osCloud) Probe(ctx context.Context) (time.Time, error) {
	p, err := openstack.NewClient(o.cfg.AuthURL)
	if err != nil {
		return time.Time{}, fmt.Errorf("openstack auth URL %s: %w", o.cfg.AuthURL, err)
	}
	p.HTTPClient = *o.hc.Client
	err = openstack.Authenticate(ctx, p, o.authOptions())
	d := o.hc.rec.Last()
	if err != nil {
		return d, osErr("authenticate", err)
	}
	return d, nil
}

func (o *osCloud) ImageExists(ctx context.Context, id string) error {
	_, ic, err := o.clients(ctx)
	if err != nil {
		return err
	}
	im, err := images.Get(ctx, ic, id).Extract()
	if err != nil {
		return osErr("image get "+id, err)
	}
	if im.Status != images.ImageStatusActive {
		return fmt.Errorf("openstack image %s is %s, not active", id, im.Status)
	}
	return nil
}

func (o *osCloud) groups(ctx context.Context) ([]secgroups.SecurityGroup, error) {
	c, _, err := o.clients(ctx)
	if err != nil {
		return nil, err
	}
	pages, err := secgroups.List(c).AllPages(ctx)
	if err != nil {
		return nil, osErr("list security groups", err)
	}
	return secgroups.ExtractSecurityGroups(pages)
}

func (o *osCloud) SecurityGroupRules(ctx context.Context, name string) ([]PortRange, error) {
	gs, err := o.groups(ctx)
	if err != nil {
		return nil, err
	}
	for _, g := range gs {
		if g.Name != name {
			continue
		}
		var rules []PortRange
		for _, r := range g.Rules {
			rules = append(rules, PortRange{Protocol: r.IPProtocol, From: r.FromPort, To: r.ToPort})
		}
		return rules, nil
	}
	return nil, fmt.Errorf("openstack security group %s: %w", name, ErrNotFound)
}

func (o *osCloud) EnsureSecurityGroup(ctx context.Context, name string, ports []int) error {
	c, _, err := o.clients(ctx)
	if err != nil {
		return err
	}
	gs, err := o.groups(ctx)
	if err != nil {
		return err
	}
	var g *secgroups.SecurityGroup
	for i := range gs {
		if gs[i].Name == name {
			g = &gs[i]
		}
	}
	if g == nil {
		g, err = secgroups.Create(ctx, c, secgroups.CreateOpts{Name: name, Description: "ConPaaS managers and agents"}).Extract()
		if err != nil {
			return osErr("create security group", err)
		}
	}
	var rules []PortRange
	for _, r := range g.Rules {
		rules = append(rules, PortRange{Protocol: r.IPProtocol, From: r.FromPort, To: r.ToPort})
	}
	for _, p := range MissingPorts(rules, ports) {
		if _, err := secgroups.CreateRule(ctx, c, secgroups.CreateRuleOpts{
			ParentGroupID: g.ID, FromPort: p, ToPort: p, IPProtocol: "tcp", CIDR: "0.0.0.0/0",
		}).Extract(); err != nil {
			return osErr(fmt.Sprintf("open port %d", p), err)
		}
	}
	return nil
}
