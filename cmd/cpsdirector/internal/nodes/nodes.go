// Package nodes starts, watches and stops the VMs of ConPaaS managers and
// agents (the original director's iaas.controller), without ever losing
// one: the intent to create a VM is recorded before the cloud is asked,
// every VM carries tags naming its deployment and intent, and a
// reconciler adopts or terminates what a crashed director left behind. It
// also charges credit by the VM-hour, as the original's credits.py did.
package nodes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/conpaas/cps/clouds/compute"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/certs"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/config"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/db"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/rpc"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/userdata"
)

// Tags on every VM.
const (
	TagDeployment = "conpaas:deployment"
	TagToken      = "conpaas:token"
	TagRole       = "conpaas:role"
	TagApp        = "conpaas:application"
	TagUser       = "conpaas:user"
	TagService    = "conpaas:service"
)

// Controller creates and deletes VMs for one director process.
type Controller struct {
	Cfg       *config.Config
	DB        *db.DB
	CA        *certs.Authority
	Clouds    map[string]compute.Cloud // by config name ("iaas", ...)
	Images    map[string]string        // cloud name -> image id
	Templates userdata.Templates
	RPC       *rpc.Client
	Log       *slog.Logger
	// ID names this director in the database (its intents' "starter").
	ID string
	// PollEvery is the wait between two looks at a booting VM.
	PollEvery time.Duration

	base   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start begins background work (adopted VMs, charging, reconciling); Stop
// ends it.
func (c *Controller) Start(ctx context.Context) {
	c.base, c.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if c.PollEvery == 0 {
		c.PollEvery = 2 * time.Second
	}
}

// Stop cancels background work and waits for it. VMs still booting stay
// recorded as such; the next start adopts them.
func (c *Controller) Stop() {
	c.cancel()
	c.wg.Wait()
}

// Go runs fn in the background, tied to the controller's life.
func (c *Controller) Go(fn func(ctx context.Context)) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		fn(c.base)
	}()
}

// ErrNoCloud is returned for a cloud name that is not configured.
type ErrNoCloud struct{ Name string }

func (e ErrNoCloud) Error() string { return "Unknown cloud: " + e.Name }

// CloudFor resolves a cloud name as the API uses it ("default" = [iaas]).
func (c *Controller) CloudFor(name string) (*config.Cloud, error) {
	cl, ok := c.Cfg.Cloud(name)
	if !ok || c.Clouds[cl.Name] == nil {
		return nil, ErrNoCloud{name}
	}
	return cl, nil
}

func token() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Spec is one VM to create.
type Spec struct {
	Role      string // manager or agent
	User      *db.User
	AppID     int64
	ServiceID int64
	Cloud     *config.Cloud
	// InstanceType overrides the cloud's SIZE_ID (nodes_info inst_type).
	InstanceType string
	// Render writes the user data for the VM.
	Render func(t userdata.Templates) ([]byte, error)
}

// ErrCloud hides a cloud's error text from API users (it is logged).
var ErrCloud = errors.New("the cloud refused to create the VM (see the director's log)")

// Create records the intent, asks the cloud for the VM and records it
// (state booting). The caller has debited the first hour's credit; on
// failure nothing is left behind and the caller refunds.
func (c *Controller) Create(ctx context.Context, s Spec) (*db.Resource, error) {
	cloud := c.Clouds[s.Cloud.Name]
	r := &db.Resource{AppID: s.AppID, ServiceID: s.ServiceID, Charged: 1, Role: s.Role, Cloud: s.Cloud.Name,
		Token: token(), Starter: c.ID, UserID: s.User.UID}
	if err := c.DB.AddIntent(ctx, r); err != nil {
		return nil, err
	}
	fail := func(err error) (*db.Resource, error) {
		if derr := c.DB.DeleteResource(context.WithoutCancel(ctx), r.RID); derr != nil {
			c.Log.Error("forgetting a failed VM intent", "rid", r.RID, "err", derr)
		}
		return nil, err
	}
	ud, err := s.Render(c.Templates)
	if err != nil {
		return fail(err)
	}
	name := fmt.Sprintf("%s-u%d-a%d-mgr", c.Cfg.DeploymentName, s.User.UID, s.AppID)
	if s.Role != certs.RoleManager {
		name = fmt.Sprintf("%s-u%d-a%d-s%d-agent", c.Cfg.DeploymentName, s.User.UID, s.AppID, s.ServiceID)
	}
	typ := s.Cloud.InstanceType
	if s.InstanceType != "" {
		typ = s.InstanceType
	}
	req := compute.StartRequest{
		Name: name, ImageID: c.Images[s.Cloud.Name], InstanceType: typ,
		SecurityGroup: s.Cloud.SecurityGroup, KeyName: s.Cloud.KeyName, UserData: ud, Token: r.Token,
		Tags: map[string]string{
			TagDeployment: c.Cfg.DeploymentName, TagToken: r.Token, TagRole: s.Role,
			TagApp: strconv.FormatInt(s.AppID, 10), TagUser: strconv.FormatInt(s.User.UID, 10),
			TagService: strconv.FormatInt(s.ServiceID, 10),
		},
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	vm, err := cloud.Start(cctx, req)
	cancel()
	if err != nil {
		c.Log.Error("creating a VM failed", "cloud", s.Cloud.Name, "role", s.Role, "app", s.AppID, "err", err)
		// The request may have reached the cloud: look for the VM by its
		// token so it does not run unrecorded.
		c.sweepToken(context.WithoutCancel(ctx), s.Cloud.Name, r.Token)
		return fail(ErrCloud)
	}
	if err := c.DB.SetVM(context.WithoutCancel(ctx), r.RID, vm.ID, vm.PublicIP, vm.PrivateIP); err != nil {
		// The intent row still names the token: the reconciler finds the
		// VM by its tag.
		return nil, err
	}
	r.VMID, r.IP, r.PrivateIP, r.State = vm.ID, vm.PublicIP, vm.PrivateIP, db.ResBooting
	c.Log.Info("VM created", "cloud", s.Cloud.Name, "vm", vm.ID, "role", s.Role, "app", s.AppID, "user", s.User.UID)
	return r, nil
}

// sweepToken terminates any VM carrying token (a create whose answer was
// lost).
func (c *Controller) sweepToken(ctx context.Context, cloud, tok string) {
	cl := c.Clouds[cloud]
	if cl == nil {
		return
	}
	lctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	vms, err := cl.List(lctx, map[string]string{TagDeployment: c.Cfg.DeploymentName, TagToken: tok})
	if err != nil {
		c.Log.Warn("looking for a VM whose creation failed", "cloud", cloud, "err", err)
		return
	}
	for _, vm := range vms {
		if err := cl.Stop(lctx, vm.ID); err != nil && !errors.Is(err, compute.ErrNotFound) {
			c.Log.Error("terminating a VM whose creation failed", "cloud", cloud, "vm", vm.ID, "err", err)
		}
	}
}

// WaitReady waits until the VM has an address and its manager (port
// ManagerPort) or agent (AgentPort) answers, then marks it running. On
// timeout or a failed VM it terminates it and forgets it.
func (c *Controller) WaitReady(ctx context.Context, r *db.Resource) error {
	cloud := c.Clouds[r.Cloud]
	port := c.Cfg.AgentPort
	if r.Role == certs.RoleManager {
		port = c.Cfg.ManagerPort
	}
	deadline := time.Now().Add(c.Cfg.NodeTimeout)
	var last error
	for time.Now().Before(deadline) {
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		vm, err := cloud.Describe(dctx, r.VMID)
		cancel()
		switch {
		case errors.Is(err, compute.ErrNotFound) || err == nil && vm.Failed():
			c.Log.Warn("VM failed while booting", "vm", r.VMID, "state", vm.State)
			c.Remove(context.WithoutCancel(ctx), []db.Resource{*r})
			c.refund(context.WithoutCancel(ctx), r.UserID, r.Charged)
			return fmt.Errorf("VM %s failed to boot", r.VMID)
		case err != nil:
			last = err
		case vm.PublicIP != "" && (vm.PublicIP != r.IP || vm.PrivateIP != r.PrivateIP):
			r.IP, r.PrivateIP = vm.PublicIP, vm.PrivateIP
			if err := c.DB.SetAddresses(ctx, r.RID, r.IP, r.PrivateIP); err != nil {
				return err
			}
		}
		// Only a VM the cloud calls running can answer (and on OpenStack
		// without automatic floating IPs, only then gets its address).
		if r.IP != "" && err == nil && vm.Running() {
			rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			last = c.RPC.Ready(rctx, r.IP, port)
			cancel()
			if last == nil {
				r.State = db.ResRunning
				c.Log.Info("VM ready", "vm", r.VMID, "role", r.Role, "ip", r.IP)
				return c.DB.SetResourceState(ctx, r.RID, db.ResRunning, c.ID)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(c.PollEvery):
		}
	}
	c.Log.Warn("VM did not become ready", "vm", r.VMID, "role", r.Role, "timeout", c.Cfg.NodeTimeout, "last", last)
	c.Remove(context.WithoutCancel(ctx), []db.Resource{*r})
	c.refund(context.WithoutCancel(ctx), r.UserID, r.Charged)
	return fmt.Errorf("the %s VM did not answer within %s", r.Role, c.Cfg.NodeTimeout)
}

func (c *Controller) refund(ctx context.Context, uid, n int64) {
	if err := c.DB.Refund(ctx, uid, n); err != nil {
		c.Log.Error("refunding credit", "user", uid, "err", err)
	}
}

// Remove terminates VMs and forgets them. A VM the cloud fails to
// terminate stays recorded (state deleting) for the reconciler.
func (c *Controller) Remove(ctx context.Context, rs []db.Resource) error {
	var wg sync.WaitGroup
	errs := make([]error, len(rs))
	for i := range rs {
		r := rs[i]
		if err := c.DB.SetResourceState(ctx, r.RID, db.ResDeleting, c.ID); err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.terminate(ctx, &r)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (c *Controller) terminate(ctx context.Context, r *db.Resource) error {
	if r.State != db.ResStarting && r.VMID != "" && r.VMID != "pending:"+r.Token {
		cloud := c.Clouds[r.Cloud]
		if cloud == nil {
			c.Log.Error("VM on a cloud that is no longer configured: terminate it by hand", "cloud", r.Cloud, "vm", r.VMID)
			return fmt.Errorf("cloud %s is not configured", r.Cloud)
		}
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := cloud.Stop(sctx, r.VMID)
		cancel()
		if err != nil && !errors.Is(err, compute.ErrNotFound) {
			c.Log.Error("terminating VM failed; will retry", "cloud", r.Cloud, "vm", r.VMID, "err", err)
			return err
		}
		c.Log.Info("VM terminated", "cloud", r.Cloud, "vm", r.VMID)
		// Its volumes go too, as the original's kill_instance deleted them.
		vs, err := c.DB.Volumes(ctx, r.AppID, r.VMID)
		if err != nil {
			return err
		}
		c.DeleteVolumes(vs)
	} else if r.Token != "" {
		c.sweepToken(ctx, r.Cloud, r.Token)
	}
	return c.DB.DeleteResource(ctx, r.RID)
}

// DeleteVolumes detaches and deletes volumes in the background, retrying
// while the cloud still reports them in use (an EBS volume detaches some
// time after its instance is gone), and forgets them.
func (c *Controller) DeleteVolumes(vs []db.Volume) {
	for _, v := range vs {
		c.Go(func(ctx context.Context) {
			cloud := c.Clouds[v.Cloud]
			if cloud == nil {
				c.Log.Error("volume on a cloud that is no longer configured: delete it by hand", "cloud", v.Cloud, "volume", v.VolumeID)
				return
			}
			var err error
			for try := 0; try < 30; try++ {
				dctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
				cloud.DetachVolume(dctx, v.VolumeID) // fails when already detached
				err = cloud.DeleteVolume(dctx, v.VolumeID)
				cancel()
				if err == nil || errors.Is(err, compute.ErrNotFound) {
					c.Log.Info("volume deleted", "cloud", v.Cloud, "volume", v.VolumeID)
					if err := c.DB.DeleteVolume(context.WithoutCancel(ctx), v.ID); err != nil {
						c.Log.Error("forgetting a volume", "volume", v.VolumeID, "err", err)
					}
					return
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(10 * time.Second):
				}
			}
			c.Log.Error("deleting a volume failed: delete it by hand", "cloud", v.Cloud, "volume", v.VolumeID, "err", err)
		})
	}
}
