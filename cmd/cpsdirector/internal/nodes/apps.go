package nodes

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/conpaas/cps/cmd/cpsdirector/internal/certs"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/config"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/db"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/userdata"
)

// ManagerSpec is the VM of an application's manager: its certificate says
// role=manager, UID=the user, serviceLocator=the application.
func (c *Controller) ManagerSpec(u *db.User, aid int64, cl *config.Cloud) Spec {
	return Spec{Role: certs.RoleManager, User: u, AppID: aid, Cloud: cl, Render: func(t userdata.Templates) ([]byte, error) {
		b, err := c.CA.Issue(certs.Name{UID: strconv.FormatInt(u.UID, 10), ServiceLocator: strconv.FormatInt(aid, 10),
			Role: certs.RoleManager, CN: "ConPaaS", O: "Contrail", Email: "info@conpaas.eu"}, 0, time.Now())
		if err != nil {
			return nil, err
		}
		return userdata.Manager{CloudType: cl.Driver, DirectorURL: c.Cfg.DirectorURL.String(), DeploymentName: c.Cfg.DeploymentName,
			UserID: u.UID, AppID: aid, Cert: b.Cert, Key: b.Key, CA: b.CACert}.Render(t)
	}}
}

// StartManager creates the manager VM of application aid (whose status
// the caller moved to PROLOGUE after debiting the first hour) and, in the
// background, waits for it: the application becomes RUNNING, or ERROR
// with the credit refunded. With wait, it returns only then.
func (c *Controller) StartManager(u *db.User, aid int64, cl *config.Cloud, wait bool) error {
	done := make(chan error, 1)
	c.Go(func(ctx context.Context) {
		err := c.startManager(ctx, u, aid, cl)
		done <- err
	})
	if !wait {
		return nil
	}
	return <-done
}

func (c *Controller) startManager(ctx context.Context, u *db.User, aid int64, cl *config.Cloud) error {
	r, err := c.Create(ctx, c.ManagerSpec(u, aid, cl))
	if err != nil {
		c.refund(context.WithoutCancel(ctx), u.UID, 1)
		c.setStatus(ctx, aid, db.AppError)
		return err
	}
	return c.awaitManager(ctx, r)
}

func (c *Controller) awaitManager(ctx context.Context, r *db.Resource) error {
	if err := c.WaitReady(ctx, r); err != nil {
		if !errors.Is(err, context.Canceled) {
			c.setStatus(ctx, r.AppID, db.AppError)
		}
		return err
	}
	// Only an application still starting becomes RUNNING (it may have
	// been stopped meanwhile).
	if _, err := c.DB.SetAppStatus(ctx, r.AppID, db.AppRunning, db.AppPrologue); err != nil {
		c.Log.Error("recording application state", "app", r.AppID, "err", err)
	}
	c.Log.Info("application manager running", "app", r.AppID, "ip", r.IP)
	return nil
}

func (c *Controller) setStatus(ctx context.Context, aid int64, status string) {
	if _, err := c.DB.SetAppStatus(context.WithoutCancel(ctx), aid, status, db.AppPrologue); err != nil {
		c.Log.Error("recording application state", "app", aid, "err", err)
	}
}

// StopApp terminates every VM of application aid and forgets its services
// (the original's _deleteapp); with del the application goes too,
// otherwise it is STOPPED.
func (c *Controller) StopApp(ctx context.Context, aid int64, del bool) error {
	rs, err := c.DB.AppResources(ctx, aid)
	if err != nil {
		return err
	}
	if _, err := c.DB.SetAppStatus(ctx, aid, db.AppEpilogue); err != nil {
		return err
	}
	// Terminate before forgetting: a VM the cloud refuses to terminate
	// stays recorded (deleting) and the reconciler retries.
	rerr := c.Remove(ctx, rs)
	if err := c.DB.DeleteServices(ctx, aid); err != nil {
		return err
	}
	// Volumes no VM took with it (detached ones).
	vs, err := c.DB.Volumes(ctx, aid, "")
	if err != nil {
		return err
	}
	var loose []db.Volume
	for _, v := range vs {
		if _, err := c.DB.ResourceByVMID(ctx, v.VMID); errors.Is(err, db.ErrNotFound) {
			loose = append(loose, v)
		}
	}
	c.DeleteVolumes(loose)
	if del {
		// The volume rows go when the volumes are deleted.
		if err := c.DB.DeleteApplication(ctx, aid, len(vs) > 0); err != nil {
			return err
		}
	} else if _, err := c.DB.SetAppStatus(ctx, aid, db.AppStopped); err != nil {
		return err
	}
	if rerr != nil {
		c.Log.Warn("some VMs of the application are still being terminated", "app", aid, "err", rerr)
	}
	return nil
}
