package nodes

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/conpaas/cps/clouds/compute"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/config"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/db"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/userdata"
)

func controller(t *testing.T) *Controller {
	t.Helper()
	ctx := context.Background()
	d, err := db.Open(ctx, config.Database{Driver: "sqlite", Path: filepath.Join(t.TempDir(), "d.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	cloud, _ := compute.Open(compute.Config{Driver: "dummy"})
	u, _ := url.Parse("https://127.0.0.1:5555")
	c := &Controller{
		Cfg: &config.Config{DirectorURL: u, DeploymentName: "test", NodeTimeout: time.Minute,
			Clouds: []config.Cloud{{Name: config.DefaultCloud, Driver: config.DriverDummy, ImageID: "dummy", InstanceType: "dummy"}}},
		DB: d, Clouds: map[string]compute.Cloud{config.DefaultCloud: cloud}, Images: map[string]string{config.DefaultCloud: "dummy"},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), ID: "test-director",
	}
	c.Start(ctx)
	t.Cleanup(c.Stop)
	return c
}

// Credit by the VM-hour (the original's check_credits): the first hour is
// paid at creation, each later hour when it starts; a user out of credit
// has their applications stopped.
func TestCharge(t *testing.T) {
	c := controller(t)
	ctx := context.Background()
	u, err := c.DB.CreateUser(ctx, db.NewUser{Username: "alice", Key: "alice", PasswordHash: "x", Credit: 3, Email: sql.NullString{String: "a@x", Valid: true}})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := c.DB.CreateApplication(ctx, u.UID, "shop")
	cl, _ := c.CloudFor("default")
	var rs []*db.Resource
	for i := 0; i < 2; i++ {
		if ok, _ := c.DB.Debit(ctx, u.UID, 1); !ok {
			t.Fatal("debit")
		}
		r, err := c.Create(ctx, Spec{Role: "agent", User: u, AppID: a.AID, Cloud: cl, Render: func(userdata.Templates) ([]byte, error) { return []byte("#!/bin/sh\n"), nil }})
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	credit := func() int64 {
		u, _ := c.DB.UserByID(ctx, u.UID)
		return u.Credit
	}
	if credit() != 1 {
		t.Fatalf("credit after two VMs: %d", credit())
	}
	start := rs[0].Created.Time
	for _, step := range []struct {
		after  time.Duration
		credit int64
	}{{30 * time.Minute, 1}, {59 * time.Minute, 1}, {61 * time.Minute, -1}, {62 * time.Minute, -1}} {
		if err := c.Charge(ctx, start.Add(step.after)); err != nil {
			t.Fatal(err)
		}
		if got := credit(); got != step.credit {
			t.Fatalf("after %s: credit %d, want %d", step.after, got, step.credit)
		}
	}
	// Out of credit: the application was stopped, its VMs terminated.
	if a, _ := c.DB.Application(ctx, u.UID, a.AID); a.Status != db.AppStopped {
		t.Fatalf("application %s", a.Status)
	}
	if vms, _ := c.Clouds[config.DefaultCloud].List(ctx, nil); len(vms) != 0 {
		t.Fatalf("VMs left %v", vms)
	}
}
