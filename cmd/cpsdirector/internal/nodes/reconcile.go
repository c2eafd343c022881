package nodes

import (
	"context"
	"errors"
	"time"

	"github.com/conpaas/cps/clouds/compute"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/certs"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/db"
)

// Intervals of the background loops. A director whose heartbeat is older
// than DeadAfter is gone: its unfinished VMs are taken over.
var (
	HeartbeatEvery = 15 * time.Second
	DeadAfter      = 90 * time.Second
	ReconcileEvery = time.Minute
	ChargeEvery    = time.Minute
)

// Run starts the background loops: heartbeat, reconciliation, charging.
// The first reconciliation takes over this director's own unfinished work
// from before a restart (same ID), before any new request.
func (c *Controller) Run(ctx context.Context) error {
	if err := c.DB.Heartbeat(ctx, c.ID); err != nil {
		return err
	}
	if err := c.Reconcile(ctx, true); err != nil {
		c.Log.Error("reconciling at start-up", "err", err)
	}
	c.Go(func(ctx context.Context) {
		hb := time.NewTicker(HeartbeatEvery)
		rc := time.NewTicker(ReconcileEvery)
		ch := time.NewTicker(ChargeEvery)
		defer hb.Stop()
		defer rc.Stop()
		defer ch.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-hb.C:
				if err := c.DB.Heartbeat(ctx, c.ID); err != nil {
					c.Log.Warn("heartbeat", "err", err)
				}
			case <-rc.C:
				if err := c.Reconcile(ctx, false); err != nil {
					c.Log.Warn("reconciling", "err", err)
				}
			case <-ch.C:
				if err := c.Charge(ctx, time.Now()); err != nil {
					c.Log.Warn("charging", "err", err)
				}
			}
		}
	})
	return nil
}

// Reconcile makes the database and the clouds agree. Unfinished VMs of
// directors that are gone (at start-up: this director's own, from before
// the restart) are finished: an intent whose VM the cloud may or may not
// have made is looked up by its tag and terminated; a booting manager is
// adopted (waited for, so its application becomes RUNNING); a booting
// agent, whose manager's request died with that director, is terminated;
// a VM being deleted is deleted. Then any VM tagged with this deployment
// that no row knows is terminated.
func (c *Controller) Reconcile(ctx context.Context, startup bool) error {
	alive, err := c.DB.Alive(ctx, DeadAfter)
	if err != nil {
		return err
	}
	alive[c.ID] = !startup
	rs, err := c.DB.ResourcesInState(ctx, db.ResStarting, db.ResBooting, db.ResDeleting)
	if err != nil {
		return err
	}
	for i := range rs {
		r := rs[i]
		if alive[r.Starter] {
			continue
		}
		if ok, err := c.DB.ClaimResource(ctx, r.RID, r.Starter, c.ID); err != nil || !ok {
			continue // another director took it
		}
		switch {
		case r.State == db.ResStarting:
			c.Log.Info("reconcile: unfinished VM creation", "rid", r.RID, "cloud", r.Cloud, "app", r.AppID)
			c.sweepToken(ctx, r.Cloud, r.Token)
			if err := c.DB.DeleteResource(ctx, r.RID); err != nil {
				return err
			}
			c.refund(ctx, r.UserID, r.Charged)
			if r.Role == certs.RoleManager {
				c.setStatus(ctx, r.AppID, db.AppError)
			}
		case r.State == db.ResBooting && r.Role == certs.RoleManager:
			c.Log.Info("reconcile: adopting a booting manager", "vm", r.VMID, "app", r.AppID)
			c.Go(func(ctx context.Context) { c.awaitManager(ctx, &r) })
		case r.State == db.ResBooting:
			c.Log.Info("reconcile: terminating an agent whose request was lost", "vm", r.VMID, "app", r.AppID)
			if err := c.Remove(ctx, []db.Resource{r}); err == nil {
				c.refund(ctx, r.UserID, r.Charged)
			}
		default: // deleting
			c.Remove(ctx, []db.Resource{r})
		}
	}
	return c.sweepOrphans(ctx)
}

// sweepOrphans terminates VMs tagged with this deployment that no row
// knows (a create that failed after the cloud made the VM).
func (c *Controller) sweepOrphans(ctx context.Context) error {
	var errs []error
	for name, cloud := range c.Clouds {
		lctx, cancel := context.WithTimeout(ctx, time.Minute)
		vms, err := cloud.List(lctx, map[string]string{TagDeployment: c.Cfg.DeploymentName})
		cancel()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, vm := range vms {
			if vm.Failed() {
				continue
			}
			if _, err := c.DB.ResourceByVMID(ctx, vm.ID); err == nil {
				continue
			}
			if tok := vm.Tags[TagToken]; tok != "" {
				if _, err := c.DB.ResourceByToken(ctx, tok); err == nil {
					continue
				}
			}
			c.Log.Warn("reconcile: terminating a VM no record knows", "cloud", name, "vm", vm.ID)
			sctx, cancel := context.WithTimeout(ctx, time.Minute)
			if err := cloud.Stop(sctx, vm.ID); err != nil && !errors.Is(err, compute.ErrNotFound) {
				errs = append(errs, err)
			}
			cancel()
		}
	}
	return errors.Join(errs...)
}

// Charge takes one credit per started VM-hour (the original's
// check_credits: a VM costs its first hour when created, the next when
// that hour is over). A user left without credit has every application
// stopped, as in the original. Concurrent directors charge each hour once.
func (c *Controller) Charge(ctx context.Context, now time.Time) error {
	rs, err := c.DB.ResourcesInState(ctx, db.ResBooting, db.ResRunning)
	if err != nil {
		return err
	}
	broke := map[int64]bool{}
	for _, r := range rs {
		hours := int64(now.Sub(r.Created.Time)/time.Hour) + 1
		if hours <= r.Charged {
			continue
		}
		charged, credit, err := c.DB.Charge(ctx, &r, r.Charged, hours)
		if err != nil {
			return err
		}
		if charged {
			c.Log.Info("charged", "user", r.UserID, "vm", r.VMID, "hours", hours-r.Charged, "credit", credit)
			if credit <= 0 {
				broke[r.UserID] = true
			}
		}
	}
	for uid := range broke {
		apps, err := c.DB.Applications(ctx, uid)
		if err != nil {
			return err
		}
		c.Log.Warn("user out of credit: stopping their applications", "user", uid)
		for _, a := range apps {
			if err := c.StopApp(ctx, a.AID, false); err != nil {
				c.Log.Error("stopping application", "app", a.AID, "err", err)
			}
		}
	}
	return nil
}
