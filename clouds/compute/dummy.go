package compute

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// dummy is the original director's DRIVER = dummy: VMs that exist only in
// this process, all reachable at 127.0.0.1, so a test can serve the
// manager and agents a director talks to.
type dummy struct {
	mu      sync.Mutex
	seq     int
	vms     map[string]Instance
	volumes map[string]string // id -> attached instance
	tokens  map[string]string // Start token -> VM id
}

func openDummy(Config) Cloud {
	return &dummy{vms: map[string]Instance{}, volumes: map[string]string{}, tokens: map[string]string{}}
}

func (d *dummy) Start(ctx context.Context, req StartRequest) (Instance, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if id, ok := d.tokens[req.Token]; ok && req.Token != "" {
		return d.vms[id], nil
	}
	d.seq++
	tags := map[string]string{}
	for k, v := range req.Tags {
		tags[k] = v
	}
	in := Instance{ID: fmt.Sprintf("dummy-%d", d.seq), State: "running", PublicIP: "127.0.0.1", PrivateIP: "127.0.0.1", Tags: tags}
	d.vms[in.ID] = in
	if req.Token != "" {
		d.tokens[req.Token] = in.ID
	}
	return in, nil
}

func (d *dummy) Stop(ctx context.Context, id string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.vms[id]; !ok {
		return fmt.Errorf("dummy VM %s: %w", id, ErrNotFound)
	}
	delete(d.vms, id)
	return nil
}

func (d *dummy) Describe(ctx context.Context, id string) (Instance, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	in, ok := d.vms[id]
	if !ok {
		return Instance{}, fmt.Errorf("dummy VM %s: %w", id, ErrNotFound)
	}
	return in, nil
}

func (d *dummy) List(ctx context.Context, tags map[string]string) ([]Instance, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Instance
next:
	for _, in := range d.vms {
		for k, v := range tags {
			if in.Tags[k] != v {
				continue next
			}
		}
		out = append(out, in)
	}
	return out, nil
}

func (d *dummy) CreateVolume(ctx context.Context, sizeGiB int, name, near string) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seq++
	id := fmt.Sprintf("dummy-vol-%d", d.seq)
	d.volumes[id] = ""
	return id, nil
}

func (d *dummy) AttachVolume(ctx context.Context, volume, instance, device string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.volumes[volume]; !ok {
		return fmt.Errorf("dummy volume %s: %w", volume, ErrNotFound)
	}
	d.volumes[volume] = instance
	return nil
}

func (d *dummy) DetachVolume(ctx context.Context, volume string) error {
	return d.AttachVolume(ctx, volume, "", "")
}

func (d *dummy) DeleteVolume(ctx context.Context, volume string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.volumes[volume]; !ok {
		return fmt.Errorf("dummy volume %s: %w", volume, ErrNotFound)
	}
	delete(d.volumes, volume)
	return nil
}

func (d *dummy) Probe(ctx context.Context) (time.Time, error)     { return time.Now(), nil }
func (d *dummy) ImageExists(ctx context.Context, id string) error { return nil }
func (d *dummy) SecurityGroupRules(ctx context.Context, name string) ([]PortRange, error) {
	return []PortRange{{Protocol: "-1", From: 0, To: 65535}}, nil
}
func (d *dummy) EnsureSecurityGroup(ctx context.Context, name string, ports []int) error { return nil }
