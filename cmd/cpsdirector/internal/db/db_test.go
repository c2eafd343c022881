package db

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/conpaas/cps/cmd/cpsdirector/internal/config"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/db/dbtest"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/names"
)

func sqliteAt(t *testing.T, path string) config.Database {
	return config.Database{Driver: "sqlite", Path: path, URI: "sqlite:///" + path}
}

func openFresh(t *testing.T) *DB {
	t.Helper()
	d, err := Open(context.Background(), sqliteAt(t, filepath.Join(t.TempDir(), "director.db")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func newUser(t *testing.T, d *DB, name string, credit int64) *User {
	t.Helper()
	u, err := d.CreateUser(context.Background(), NewUser{Username: name, Key: names.Key(name), PasswordHash: "x", Credit: credit,
		Email: sql.NullString{String: name + "@example.org", Valid: true}})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// store runs the behaviour every dialect must share.
func store(t *testing.T, d *DB, name string) {
	ctx := context.Background()
	if v, err := d.Version(ctx); err != nil || v != SchemaVersion {
		t.Fatalf("version %d %v", v, err)
	}
	u := newUser(t, d, name, 5)
	apps, err := d.Applications(ctx, u.UID)
	if err != nil || len(apps) != 1 || apps[0].Name.String != "New Application" || apps[0].Status != AppInit {
		t.Fatalf("create_user's application: %+v %v", apps, err)
	}
	// Look-alike and duplicate names and addresses are refused.
	look := strings.ToUpper(name[:1]) + strings.ReplaceAll(name[1:], "l", "1")
	for _, n := range []NewUser{{Username: name, Key: names.Key(name)}, {Username: look, Key: names.Key(look)},
		{Username: "zed", Key: "zed", Email: sql.NullString{String: name + "@example.org", Valid: true}}} {
		var c *Conflict
		if _, err := d.CreateUser(ctx, n); !errorsAs(err, &c) {
			t.Errorf("%+v: %v", n, err)
		}
	}
	// Ids never come back after a delete.
	b := newUser(t, d, name+"-b", 1)
	if err := d.DeleteUser(ctx, b.UID); err != nil {
		t.Fatal(err)
	}
	c := newUser(t, d, name+"-c", 1)
	if c.UID <= b.UID {
		t.Fatalf("uid %d reused after deleting %d", c.UID, b.UID)
	}
	a1, _ := d.CreateApplication(ctx, u.UID, "x")
	d.DeleteApplication(ctx, a1.AID, false)
	a2, _ := d.CreateApplication(ctx, u.UID, "x")
	if a2.AID <= a1.AID {
		t.Fatalf("aid %d reused after deleting %d", a2.AID, a1.AID)
	}
	if _, err := d.CreateApplication(ctx, u.UID, "x"); err != ErrExists {
		t.Fatalf("duplicate application: %v", err)
	}
	// Credit: 20 concurrent debits of 1 from 5 succeed 5 times.
	var ok atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := d.Debit(ctx, u.UID, 1)
			if err != nil {
				t.Error(err)
			}
			if got {
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 5 {
		t.Fatalf("%d debits succeeded, want 5", ok.Load())
	}
	if u2, _ := d.UserByID(ctx, u.UID); u2.Credit != 0 {
		t.Fatalf("credit %d", u2.Credit)
	}
	// One hour charged once, however many directors try.
	d.AddCredit(ctx, u.UID, 10)
	r := &Resource{AppID: a2.AID, Role: "manager", Cloud: "iaas", Token: "tok", Starter: "d1", UserID: u.UID, Charged: 1}
	if err := d.AddIntent(ctx, r); err != nil {
		t.Fatal(err)
	}
	var charged atomic.Int32
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c, _, err := d.Charge(ctx, r, 1, 2); err != nil {
				t.Error(err)
			} else if c {
				charged.Add(1)
			}
		}()
	}
	wg.Wait()
	if u2, _ := d.UserByID(ctx, u.UID); charged.Load() != 1 || u2.Credit != 9 {
		t.Fatalf("charged %d times, credit %d", charged.Load(), u2.Credit)
	}
	if err := d.DeleteUser(ctx, u.UID); err == nil || !strings.Contains(err.Error(), "stop their applications first") {
		t.Fatalf("deleting a user with VMs: %v", err)
	}
	if err := d.Heartbeat(ctx, "d1"); err != nil {
		t.Fatal(err)
	}
	if err := d.Heartbeat(ctx, "d1"); err != nil {
		t.Fatal(err)
	}
	if alive, err := d.Alive(ctx, 60e9); err != nil || !alive["d1"] {
		t.Fatalf("alive %v %v", alive, err)
	}
}

func errorsAs(err error, c **Conflict) bool {
	x, ok := err.(*Conflict)
	*c = x
	return ok
}

func TestSQLite(t *testing.T) {
	store(t, openFresh(t), "alice")
}

// The database and SQLite's WAL and shared-memory files hold password
// hashes: owner only, whatever the umask.
func TestSQLiteFileModes(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	p := filepath.Join(t.TempDir(), "director.db")
	d, err := Open(context.Background(), sqliteAt(t, p))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	newUser(t, d, "alice", 1)
	for _, f := range []string{p, p + "-wal", p + "-shm"} {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, st.Mode().Perm())
		}
	}
}

// An original director.db is migrated in place: rows, hashes and credit
// kept, AUTOINCREMENT from then on, the original's foreign key on the
// non-unique service.sid gone.
func TestMigrateOriginalSQLite(t *testing.T) {
	p := filepath.Join(t.TempDir(), "director.db")
	raw, err := sql.Open("sqlite", p)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{dbtest.OriginalSQLite, dbtest.OriginalRows} {
		if _, err := raw.Exec(s); err != nil {
			t.Fatal(err)
		}
	}
	raw.Close()
	ctx := context.Background()
	d, err := Open(ctx, sqliteAt(t, p))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	a, err := d.UserByName(ctx, "alice")
	if err != nil || a.UID != 1 || a.Credit != 42 || a.Password.String != "dac24dcc2864a1e7f549fd6c7795c7b8" || a.Fname.String != "Alice" ||
		a.Created.ISO() != "2015-03-04T10:11:12.131415" || a.CertGen != 0 {
		t.Fatalf("alice %+v %v", a, err)
	}
	if c, _ := d.UserByUUID(ctx, "uuid-carol"); c == nil || c.Username != "carol" {
		t.Fatalf("carol by uuid: %+v", c)
	}
	apps, _ := d.Applications(ctx, 1)
	if len(apps) != 2 || apps[1].Name.String != "shop" || apps[1].Manager == nil || apps[1].Manager.IP != "203.0.113.10" {
		t.Fatalf("apps %+v", apps)
	}
	rs, _ := d.UserResources(ctx, 1)
	if len(rs) != 1 || rs[0].State != ResRunning || rs[0].UserID != 1 || rs[0].AppName != "shop" || rs[0].Created.Str() != "2015-03-04 10:30:00" {
		t.Fatalf("resources %+v", rs)
	}
	var ddl string
	d.sql.QueryRow(`SELECT sql FROM sqlite_master WHERE name = 'user'`).Scan(&ddl)
	if !strings.Contains(ddl, "AUTOINCREMENT") {
		t.Fatalf("user table not rebuilt: %s", ddl)
	}
	u := newUser(t, d, "dave", 1)
	if u.UID != 4 {
		t.Fatalf("new uid %d", u.UID)
	}
	// The foreign-key check of the whole database passes.
	rows, _ := d.sql.Query(`PRAGMA foreign_key_check`)
	if rows.Next() {
		t.Fatal("foreign key violations after migration")
	}
	rows.Close()
	store(t, d, "eileen")
}

// cps's first schema (users/applications/services/instances).
func TestMigrateCPS1(t *testing.T) {
	p := filepath.Join(t.TempDir(), "director.db")
	raw, _ := sql.Open("sqlite", p)
	for _, s := range []string{
		`CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version VALUES (1)`,
		`CREATE TABLE users (id INTEGER PRIMARY KEY, username TEXT NOT NULL UNIQUE, email TEXT NOT NULL DEFAULT '', password_hash TEXT NOT NULL, created TEXT NOT NULL)`,
		`CREATE TABLE applications (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, name TEXT NOT NULL, created TEXT NOT NULL, UNIQUE (user_id, name))`,
		`CREATE TABLE services (id INTEGER PRIMARY KEY, application_id INTEGER NOT NULL, type TEXT NOT NULL, cloud TEXT NOT NULL, state TEXT NOT NULL, error TEXT NOT NULL DEFAULT '', created TEXT NOT NULL, updated TEXT NOT NULL)`,
		`CREATE TABLE instances (id INTEGER PRIMARY KEY, service_id INTEGER NOT NULL, role TEXT NOT NULL, cloud TEXT NOT NULL, instance_id TEXT NOT NULL, image_id TEXT NOT NULL, instance_type TEXT NOT NULL, state TEXT NOT NULL, created TEXT NOT NULL, terminated TEXT NOT NULL DEFAULT '')`,
		`INSERT INTO users VALUES (7, 'test', '', '$2a$11$abcdefghijklmnopqrstuuO0123456789012345678901234567890', '2024-01-01T00:00:00Z')`,
		`INSERT INTO applications VALUES (3, 7, 'shop', '2024-01-01T00:00:00Z')`,
		`INSERT INTO services VALUES (1, 3, 'php', 'iaas', 'stopped', '', '2024-01-01T00:00:00Z', '2024-01-01T00:00:00Z')`,
		`INSERT INTO instances VALUES (1, 1, 'manager', 'iaas', 'i-1', 'ami', 't3', 'terminated', '2024-01-01T00:00:00Z', '2024-01-02T00:00:00Z')`,
	} {
		if _, err := raw.Exec(s); err != nil {
			t.Fatal(err)
		}
	}
	raw.Close()
	ctx := context.Background()
	d, err := Open(ctx, sqliteAt(t, p))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	u, err := d.UserByName(ctx, "test")
	if err != nil || u.UID != 7 || !strings.HasPrefix(u.Password.String, "$2a$11$") || u.Credit != 50 {
		t.Fatalf("user %+v %v", u, err)
	}
	if a, err := d.Application(ctx, 7, 3); err != nil || a.Name.String != "shop" {
		t.Fatalf("app %+v %v", a, err)
	}
}

func TestMariaDB(t *testing.T) {
	uri := dbtest.MariaDB(t)
	c, err := config.ParseDatabaseURI(uri, "/")
	if err != nil {
		t.Fatal(err)
	}
	d, err := Open(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	store(t, d, "alice")
	// A second director opening the same database finds it current.
	d2, err := Open(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	d2.Close()
}

func TestPostgreSQL(t *testing.T) {
	uri := dbtest.PostgreSQL(t)
	c, err := config.ParseDatabaseURI(uri, "/")
	if err != nil {
		t.Fatal(err)
	}
	d, err := Open(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	store(t, d, "alice")
}

// TestCreditStaysInteger: SQLite turns an overflowing credit + n into a
// REAL. `cpsdirector credit alice 9223372036854775807` (an operator's
// "unlimited") was accepted, and the next credit + 1 (a refund, another
// `credit`) stored 9.2e18, after which every read of the user failed with
// a Scan error. Credit now stays at most MaxCredit and a change past it
// is refused with the balance unchanged.
func TestCreditStaysInteger(t *testing.T) {
	ctx := context.Background()
	d := openFresh(t)
	u := newUser(t, d, "alice", 5)
	for _, c := range []struct {
		name    string
		add     int64
		want    int64 // balance afterwards
		tooMuch bool
	}{
		{"small", 10, 15, false},
		{"int64 max", 1<<63 - 1, 15, true},
		{"up to the cap", MaxCredit - 15, MaxCredit, false},
		{"past the cap", 1, MaxCredit, true},
		// Any amount can be taken (a balance from before the cap must
		// not need a thousand steps to come down).
		{"int64 min", -1 << 63, 0, false},
		{"below zero stops at zero", -7, 0, false},
	} {
		got, err := d.AddCredit(ctx, u.UID, c.add)
		if c.tooMuch != (err == ErrCreditTooLarge) || !c.tooMuch && err != nil {
			t.Errorf("%s: AddCredit(%d): %v", c.name, c.add, err)
		}
		// The row must still read back as an integer.
		now, err := d.UserByName(ctx, "alice")
		if err != nil || now.Credit != c.want || !c.tooMuch && got != c.want {
			t.Errorf("%s: credit %v (AddCredit said %d), %v; want %d", c.name, now, got, err, c.want)
		}
	}
	if _, err := d.CreateUser(ctx, NewUser{Username: "bob", Key: "bob", PasswordHash: "x", Credit: MaxCredit + 1}); err != ErrCreditTooLarge {
		t.Errorf("CreateUser with credit past the cap: %v", err)
	}
}
