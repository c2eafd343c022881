package db

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMigrateAndOwnership(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "sub", "director.db")
	d, err := Open(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := d.Version(ctx); v != SchemaVersion() {
		t.Fatalf("version %d", v)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	alice, err := d.AddUser(ctx, "alice", "", "h1")
	if err != nil {
		t.Fatal(err)
	}
	bob, _ := d.AddUser(ctx, "bob", "", "h2")
	if _, err := d.AddUser(ctx, "alice", "", "x"); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate user: %v", err)
	}
	// An injection attempt is just an odd name.
	evil := "x'); DROP TABLE users; --"
	app, err := d.CreateApplication(ctx, alice.ID, evil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.UserByName(ctx, "bob"); err != nil {
		t.Fatal("users table damaged:", err)
	}
	if _, err := d.Application(ctx, bob.ID, app.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("bob sees alice's app: %v", err)
	}
	if err := d.DeleteApplication(ctx, bob.ID, app.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("bob deleted alice's app: %v", err)
	}
	s, _ := d.CreateService(ctx, app.ID, "php", "iaas")
	d.AddInstance(ctx, &Instance{ServiceID: s.ID, Role: "manager", Cloud: "iaas", InstanceID: "i-1", ImageID: "ami-1", InstanceType: "t3", State: "pending"})
	if l, _ := d.Services(ctx, bob.ID, 0); len(l) != 0 {
		t.Fatalf("bob sees %v", l)
	}
	l, _ := d.Services(ctx, alice.ID, app.ID)
	if len(l) != 1 || l[0].Manager == nil || l[0].Manager.InstanceID != "i-1" {
		t.Fatalf("alice services %+v", l)
	}
	d.Close()

	// Reopening does not re-run migrations; a newer schema is refused.
	d, err = Open(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := d.Applications(ctx, alice.ID); len(a) != 1 || a[0].Name != evil {
		t.Fatalf("apps %v", a)
	}
	d.Close()
	raw, _ := sql.Open("sqlite", p)
	raw.Exec(`UPDATE schema_version SET version = 99`)
	raw.Close()
	if _, err := Open(ctx, p); err == nil || !strings.Contains(err.Error(), "newer than this cpsdirector") {
		t.Fatal(err)
	}
}
