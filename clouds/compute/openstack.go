package compute

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/keypairs"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/secgroups"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/volumeattach"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/external"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/floatingips"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
)

type osCloud struct {
	cfg Config
	hc  recordingClient

	mu       sync.Mutex
	provider *gophercloud.ProviderClient
	compute  *gophercloud.ServiceClient
	image    *gophercloud.ServiceClient
	network  *gophercloud.ServiceClient // created on first use: Neutron is optional
	volume   *gophercloud.ServiceClient // likewise Cinder
}

func openOpenStack(cfg Config, hc recordingClient) (Cloud, error) {
	if a := cfg.OpenStack.Auth; a.IdentityEndpoint == "" || a.Username == "" || a.TenantName == "" {
		return nil, errors.New("openstack: auth URL, user and project are required")
	}
	return &osCloud{cfg: cfg, hc: hc}, nil
}

func (o *osCloud) authOptions() gophercloud.AuthOptions {
	ao := o.cfg.OpenStack.Auth
	// Long-running director: fetch a new token when this one expires.
	ao.AllowReauth = true
	return ao
}

func (o *osCloud) authURL() string { return o.cfg.OpenStack.Auth.IdentityEndpoint }
func (o *osCloud) region() string  { return o.cfg.OpenStack.Endpoints.Region }

// clients authenticates once (lazily, so serve can start without the
// cloud) and returns the compute and image service clients.
func (o *osCloud) clients(ctx context.Context) (*gophercloud.ServiceClient, *gophercloud.ServiceClient, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.compute != nil {
		return o.compute, o.image, nil
	}
	p, err := openstack.NewClient(o.authURL())
	if err != nil {
		return nil, nil, fmt.Errorf("openstack auth URL %s: %w", o.authURL(), err)
	}
	p.HTTPClient = *o.hc.Client
	if err := openstack.Authenticate(ctx, p, o.authOptions()); err != nil {
		return nil, nil, osErr("authenticate", err)
	}
	eo := gophercloud.EndpointOpts{Region: o.region()}
	c, err := openstack.NewComputeV2(p, eo)
	if err != nil {
		return nil, nil, fmt.Errorf("openstack: no compute endpoint in the Keystone catalogue (region %q): %w", o.region(), err)
	}
	im, err := openstack.NewImageV2(p, eo)
	if err != nil {
		return nil, nil, fmt.Errorf("openstack: no image endpoint in the Keystone catalogue (region %q): %w", o.region(), err)
	}
	o.provider, o.compute, o.image = p, c, im
	return c, im, nil
}

// optional returns the Neutron ("network") or Cinder ("volume") client,
// which only some operations need.
func (o *osCloud) optional(ctx context.Context, kind string) (*gophercloud.ServiceClient, error) {
	if _, _, err := o.clients(ctx); err != nil {
		return nil, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	eo := gophercloud.EndpointOpts{Region: o.region()}
	var err error
	switch kind {
	case "network":
		if o.network == nil {
			o.network, err = openstack.NewNetworkV2(o.provider, eo)
		}
		if err != nil {
			return nil, fmt.Errorf("openstack: no network (Neutron) endpoint in the Keystone catalogue (region %q): %w", o.region(), err)
		}
		return o.network, nil
	default:
		if o.volume == nil {
			o.volume, err = openstack.NewBlockStorageV3(o.provider, eo)
		}
		if err != nil {
			return nil, fmt.Errorf("openstack: no block-storage (Cinder) endpoint in the Keystone catalogue (region %q): %w", o.region(), err)
		}
		return o.volume, nil
	}
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
	co := servers.CreateOpts{
		Name:           req.Name,
		ImageRef:       req.ImageID,
		FlavorRef:      fid,
		SecurityGroups: []string{req.SecurityGroup},
		UserData:       req.UserData,
		Metadata:       req.Tags,
	}
	if o.cfg.Network != "" {
		nid, err := o.networkID(ctx, o.cfg.Network)
		if err != nil {
			return Instance{}, err
		}
		co.Networks = []servers.Network{{UUID: nid}}
	}
	opts := keypairs.CreateOptsExt{CreateOptsBuilder: co, KeyName: req.KeyName}
	s, err := servers.Create(ctx, c, opts, nil).Extract()
	if err != nil {
		return Instance{}, osErr("servers.Create", err)
	}
	return Instance{ID: s.ID, State: s.Status, Tags: req.Tags}, nil
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$`)

// networkID accepts a network id or name, as the original director's
// NETWORK_ID did.
func (o *osCloud) networkID(ctx context.Context, idOrName string) (string, error) {
	if uuidRE.MatchString(idOrName) {
		return idOrName, nil
	}
	nc, err := o.optional(ctx, "network")
	if err != nil {
		return "", err
	}
	pages, err := networks.List(nc, networks.ListOpts{Name: idOrName}).AllPages(ctx)
	if err != nil {
		return "", osErr("list networks", err)
	}
	l, err := networks.ExtractNetworks(pages)
	if err != nil {
		return "", err
	}
	if len(l) != 1 {
		return "", fmt.Errorf("openstack network %q: %d networks have that name, want 1: %w", idOrName, len(l), ErrNotFound)
	}
	return l[0].ID, nil
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
	in := osInstance(s)
	if o.cfg.FloatingIP && in.State == "ACTIVE" && in.PrivateIP != "" && in.PublicIP == in.PrivateIP {
		fip, err := o.associateFloatingIP(ctx, id)
		if err != nil {
			return in, err
		}
		in.PublicIP = fip
	}
	return in, nil
}

func osInstance(s *servers.Server) Instance {
	in := Instance{ID: s.ID, State: s.Status, PublicIP: s.AccessIPv4, Tags: s.Metadata}
	for _, nets := range s.Addresses {
		l, _ := nets.([]any)
		for _, a := range l {
			m, _ := a.(map[string]any)
			addr, _ := m["addr"].(string)
			if v, _ := m["version"].(float64); addr == "" || v == 6 {
				continue
			}
			// ConPaaS talks to VMs on their floating (public) address.
			if m["OS-EXT-IPS:type"] == "floating" {
				in.PublicIP = addr
			} else if in.PrivateIP == "" {
				in.PrivateIP = addr
			}
		}
	}
	if in.PublicIP == "" {
		in.PublicIP = in.PrivateIP
	}
	return in
}

// associateFloatingIP gives server a free floating address (allocating one
// from the external network when none is free), as the original director
// did when AUTO_ASSIGN_FLOATING_IP = false.
func (o *osCloud) associateFloatingIP(ctx context.Context, server string) (string, error) {
	nc, err := o.optional(ctx, "network")
	if err != nil {
		return "", err
	}
	pp, err := ports.List(nc, ports.ListOpts{DeviceID: server}).AllPages(ctx)
	if err != nil {
		return "", osErr("list ports", err)
	}
	pl, err := ports.ExtractPorts(pp)
	if err != nil || len(pl) == 0 {
		return "", fmt.Errorf("openstack server %s has no port yet", server)
	}
	fp, err := floatingips.List(nc, floatingips.ListOpts{}).AllPages(ctx)
	if err != nil {
		return "", osErr("list floating IPs", err)
	}
	fl, err := floatingips.ExtractFloatingIPs(fp)
	if err != nil {
		return "", err
	}
	var fip *floatingips.FloatingIP
	for i := range fl {
		if fl[i].PortID == "" {
			fip = &fl[i]
			break
		}
	}
	if fip == nil {
		np, err := networks.List(nc, external.ListOptsExt{ListOptsBuilder: networks.ListOpts{}, External: ptr(true)}).AllPages(ctx)
		if err != nil {
			return "", osErr("list external networks", err)
		}
		nl, err := networks.ExtractNetworks(np)
		if err != nil || len(nl) == 0 {
			return "", errors.New("openstack: no external network to allocate a floating IP from")
		}
		fip, err = floatingips.Create(ctx, nc, floatingips.CreateOpts{FloatingNetworkID: nl[0].ID}).Extract()
		if err != nil {
			return "", osErr("allocate floating IP", err)
		}
	}
	if _, err := floatingips.Update(ctx, nc, fip.ID, floatingips.UpdateOpts{PortID: &pl[0].ID}).Extract(); err != nil {
		return "", osErr("associate floating IP", err)
	}
	return fip.FloatingIP, nil
}

func ptr[T any](v T) *T { return &v }

func (o *osCloud) List(ctx context.Context, tags map[string]string) ([]Instance, error) {
	c, _, err := o.clients(ctx)
	if err != nil {
		return nil, err
	}
	pages, err := servers.List(c, servers.ListOpts{}).AllPages(ctx)
	if err != nil {
		return nil, osErr("list servers", err)
	}
	all, err := servers.ExtractServers(pages)
	if err != nil {
		return nil, err
	}
	var out []Instance
next:
	for i := range all {
		for k, v := range tags {
			if all[i].Metadata[k] != v {
				continue next
			}
		}
		out = append(out, osInstance(&all[i]))
	}
	return out, nil
}

func (o *osCloud) CreateVolume(ctx context.Context, sizeGiB int, name, near string) (string, error) {
	vc, err := o.optional(ctx, "volume")
	if err != nil {
		return "", err
	}
	v, err := volumes.Create(ctx, vc, volumes.CreateOpts{Size: sizeGiB, Name: name}, nil).Extract()
	if err != nil {
		return "", osErr("create volume", err)
	}
	for {
		got, err := volumes.Get(ctx, vc, v.ID).Extract()
		if err != nil {
			return v.ID, osErr("get volume "+v.ID, err)
		}
		switch got.Status {
		case "available":
			return v.ID, nil
		case "error":
			return v.ID, fmt.Errorf("openstack volume %s went into error", v.ID)
		}
		select {
		case <-ctx.Done():
			return v.ID, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func (o *osCloud) AttachVolume(ctx context.Context, volume, instance, device string) error {
	c, _, err := o.clients(ctx)
	if err != nil {
		return err
	}
	// The original director passed the bare device name ("sdb").
	if !strings.HasPrefix(device, "/dev/") {
		device = "/dev/" + device
	}
	if _, err := volumeattach.Create(ctx, c, instance, volumeattach.CreateOpts{VolumeID: volume, Device: device}).Extract(); err != nil {
		return osErr("attach volume", err)
	}
	return nil
}

func (o *osCloud) DetachVolume(ctx context.Context, volume string) error {
	vc, err := o.optional(ctx, "volume")
	if err != nil {
		return err
	}
	v, err := volumes.Get(ctx, vc, volume).Extract()
	if err != nil {
		return osErr("get volume "+volume, err)
	}
	c, _, _ := o.clients(ctx)
	for _, a := range v.Attachments {
		if err := volumeattach.Delete(ctx, c, a.ServerID, volume).ExtractErr(); err != nil {
			return osErr("detach volume", err)
		}
	}
	return nil
}

func (o *osCloud) DeleteVolume(ctx context.Context, volume string) error {
	vc, err := o.optional(ctx, "volume")
	if err != nil {
		return err
	}
	if err := volumes.Delete(ctx, vc, volume, volumes.DeleteOpts{}).ExtractErr(); err != nil {
		return osErr("delete volume", err)
	}
	return nil
}

func (o *osCloud) Probe(ctx context.Context) (time.Time, error) {
	p, err := openstack.NewClient(o.authURL())
	if err != nil {
		return time.Time{}, fmt.Errorf("openstack auth URL %s: %w", o.authURL(), err)
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
