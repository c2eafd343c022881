package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/conpaas/cps/cmd/cpsdirector/internal/names"
)

// SchemaVersion is the schema this program writes. Version 1 was cps's
// first own schema (users/applications/services/instances); an original
// ConPaaS director.db has no version (its tables are user, application,
// service, resource).
const SchemaVersion = 2

// The tables in SQLite's dialect; ddl() adapts the column types. Column
// names and types of user, application, service and resource are the
// original's (its SQLAlchemy models), so an original database and a new one
// look alike; cps's columns come after them.
var tables = []struct{ name, ddl string }{
	{"user", `CREATE TABLE "user" (
	uid {pk},
	username VARCHAR(80) NOT NULL UNIQUE,
	fname VARCHAR(256),
	lname VARCHAR(256),
	email VARCHAR(256) UNIQUE,
	affiliation VARCHAR(256),
	password VARCHAR(256),
	created {time},
	credit INTEGER,
	uuid VARCHAR(80),
	openid VARCHAR(200),
	username_key VARCHAR(320) UNIQUE,
	cert_gen INTEGER NOT NULL DEFAULT 0
)`},
	{"application", `CREATE TABLE application (
	aid {pk},
	name VARCHAR(256),
	status VARCHAR(256),
	user_id INTEGER REFERENCES "user" (uid)
)`},
	{"service", `CREATE TABLE service (
	rec_id {pk},
	sid INTEGER,
	name VARCHAR(256),
	type VARCHAR(32),
	state VARCHAR(32),
	created {time},
	cloud VARCHAR(128),
	subnet VARCHAR(18),
	application_id INTEGER REFERENCES application (aid)
)`},
	// resource.app_id has no foreign key: a deleted application's VMs stay
	// listed ("deleting") until the cloud confirms they are gone.
	{"resource", `CREATE TABLE resource (
	rid {pk},
	vmid VARCHAR(80) NOT NULL UNIQUE,
	app_id INTEGER,
	service_id INTEGER,
	charged INTEGER,
	ip VARCHAR(80),
	role VARCHAR(10),
	cloud VARCHAR(128),
	created {time},
	private_ip VARCHAR(80),
	state VARCHAR(16) NOT NULL DEFAULT 'running',
	token VARCHAR(64),
	starter VARCHAR(128),
	user_id INTEGER
)`},
	{"volume", `CREATE TABLE volume (
	id {pk},
	volume_id VARCHAR(128) NOT NULL,
	app_id INTEGER,
	cloud VARCHAR(128),
	vm_id VARCHAR(80),
	created {time}
)`},
	{"director_heartbeat", `CREATE TABLE director_heartbeat (
	id VARCHAR(128) NOT NULL PRIMARY KEY,
	seen {time}
)`},
}

var indexes = []string{
	`CREATE INDEX application_user ON application (user_id)`,
	`CREATE INDEX service_application ON service (application_id)`,
	`CREATE INDEX resource_app ON resource (app_id)`,
	`CREATE INDEX resource_state ON resource (state)`,
	`CREATE INDEX volume_app ON volume (app_id)`,
}

// ddl adapts a statement to the dialect. AUTOINCREMENT (SQLite) makes ids
// never come back after a delete: a deleted user's certificates must not
// name a new user, a deleted application's manager must not reach a new
// one. MySQL's AUTO_INCREMENT and PostgreSQL's sequences never reuse ids.
func (d *DB) ddl(s string) string {
	pk, tm := "INTEGER PRIMARY KEY AUTOINCREMENT", "DATETIME"
	switch d.dialect {
	case "mysql":
		pk, tm = "INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY", "DATETIME(6)"
	case "postgres":
		pk, tm = "SERIAL PRIMARY KEY", "TIMESTAMP"
	}
	s = strings.NewReplacer("{pk}", pk, "{time}", tm).Replace(s)
	if d.dialect == "mysql" && strings.HasPrefix(s, "CREATE TABLE") {
		s += " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
	}
	return d.q(s)
}

func (d *DB) tableExists(ctx context.Context, x execer, name string) (bool, error) {
	var q string
	switch d.dialect {
	case "sqlite":
		q = `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?`
	case "mysql":
		q = `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?`
	default:
		q = `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?`
	}
	var n int
	err := x.QueryRowContext(ctx, d.q(q), name).Scan(&n)
	return n > 0, err
}

func (d *DB) columns(ctx context.Context, x execer, table string) (map[string]bool, error) {
	var rows *sql.Rows
	var err error
	switch d.dialect {
	case "sqlite":
		rows, err = x.QueryContext(ctx, `SELECT name FROM pragma_table_info(?)`, table)
	case "mysql":
		rows, err = x.QueryContext(ctx, `SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ?`, table)
	default:
		rows, err = x.QueryContext(ctx, `SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1`, table)
	}
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols := map[string]bool{}
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, err
		}
		cols[strings.ToLower(c)] = true
	}
	return cols, rows.Err()
}

// migrate brings any database to SchemaVersion: an empty one, an original
// ConPaaS director.db, or cps's version 1. Several directors may start at
// once against MySQL or PostgreSQL: a server-side lock serialises them.
func (d *DB) migrate(ctx context.Context) error {
	conn, err := d.sql.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	switch d.dialect {
	case "mysql":
		var got sql.NullInt64
		if err := conn.QueryRowContext(ctx, `SELECT GET_LOCK('cpsdirector-migrate', 120)`).Scan(&got); err != nil || got.Int64 != 1 {
			return fmt.Errorf("lock for migration: %v", err)
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT RELEASE_LOCK('cpsdirector-migrate')`)
	case "postgres":
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(4242017)`); err != nil {
			return fmt.Errorf("lock for migration: %w", err)
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(4242017)`)
	case "sqlite":
		// Table rebuilds need foreign keys off (a no-op inside a
		// transaction, so set it on the connection first).
		if _, err := conn.ExecContext(ctx, `PRAGMA foreign_keys = OFF`); err != nil {
			return err
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), `PRAGMA foreign_keys = ON`)
	}
	version := -1 // -1: empty database
	hasVersion, err := d.tableExists(ctx, conn, "schema_version")
	if err != nil {
		return fmt.Errorf("inspect schema: %w", err)
	}
	if hasVersion {
		if err := conn.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&version); err != nil {
			return fmt.Errorf("read schema_version: %w", err)
		}
	} else if orig, err := d.tableExists(ctx, conn, "user"); err != nil {
		return err
	} else if orig {
		version = 0
	}
	if version > SchemaVersion {
		return fmt.Errorf("schema version %d is newer than this cpsdirector understands (%d): upgrade cpsdirector", version, SchemaVersion)
	}
	if version == SchemaVersion {
		return nil
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	switch version {
	case -1:
		err = d.create(ctx, tx)
	case 0:
		err = d.fromOriginal(ctx, tx)
	case 1:
		err = d.fromCPS1(ctx, tx)
	}
	if err != nil {
		return err
	}
	if !hasVersion {
		if _, err := tx.ExecContext(ctx, d.ddl(`CREATE TABLE schema_version (version INTEGER NOT NULL)`)); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, d.q(`INSERT INTO schema_version (version) VALUES (?)`), SchemaVersion); err != nil {
			return err
		}
	} else if _, err := tx.ExecContext(ctx, d.q(`UPDATE schema_version SET version = ?`), SchemaVersion); err != nil {
		return err
	}
	return tx.Commit()
}

func (d *DB) create(ctx context.Context, tx *sql.Tx) error {
	for _, t := range tables {
		if _, err := tx.ExecContext(ctx, d.ddl(t.ddl)); err != nil {
			return fmt.Errorf("create table %s: %w", t.name, err)
		}
	}
	for _, ix := range indexes {
		if _, err := tx.ExecContext(ctx, d.ddl(ix)); err != nil {
			return fmt.Errorf("%s: %w", ix, err)
		}
	}
	return nil
}

// fromOriginal migrates an original ConPaaS database in place. On SQLite the
// four tables are rebuilt (SQLAlchemy did not ask for AUTOINCREMENT, so
// the original reused the ids of deleted rows, and its resource table had a
// foreign key on the non-unique service.sid); on MySQL and PostgreSQL the
// ids already never repeat and the new columns are added. Users keep their
// password hashes (MD5, upgraded to bcrypt at their next login) and credit.
func (d *DB) fromOriginal(ctx context.Context, tx *sql.Tx) error {
	if d.dialect == "sqlite" {
		for _, t := range tables[:4] {
			old, err := d.columns(ctx, tx, t.name)
			if err != nil {
				return err
			}
			if len(old) == 0 {
				// Very old installations may lack a table: create it.
				if _, err := tx.ExecContext(ctx, d.ddl(t.ddl)); err != nil {
					return err
				}
				continue
			}
			if _, err := tx.ExecContext(ctx, `ALTER TABLE "`+t.name+`" RENAME TO "`+t.name+`_original"`); err != nil {
				return fmt.Errorf("migrate %s: %w", t.name, err)
			}
			if _, err := tx.ExecContext(ctx, d.ddl(t.ddl)); err != nil {
				return fmt.Errorf("migrate %s: %w", t.name, err)
			}
			newCols, err := d.columns(ctx, tx, t.name)
			if err != nil {
				return err
			}
			var common []string
			for c := range old {
				if newCols[c] {
					common = append(common, `"`+c+`"`)
				}
			}
			cl := strings.Join(common, ", ")
			if _, err := tx.ExecContext(ctx, `INSERT INTO "`+t.name+`" (`+cl+`) SELECT `+cl+` FROM "`+t.name+`_original"`); err != nil {
				return fmt.Errorf("copy %s: %w", t.name, err)
			}
			if _, err := tx.ExecContext(ctx, `DROP TABLE "`+t.name+`_original"`); err != nil {
				return err
			}
		}
	} else {
		add := map[string][]string{
			"user":        {"uuid VARCHAR(80)", "openid VARCHAR(200)", "username_key VARCHAR(320)", "cert_gen INTEGER NOT NULL DEFAULT 0"},
			"resource":    {"private_ip VARCHAR(80)", "state VARCHAR(16) NOT NULL DEFAULT 'running'", "token VARCHAR(64)", "starter VARCHAR(128)", "user_id INTEGER"},
			"service":     {},
			"application": {},
		}
		for _, t := range tables[:4] {
			have, err := d.columns(ctx, tx, t.name)
			if err != nil {
				return err
			}
			if len(have) == 0 {
				if _, err := tx.ExecContext(ctx, d.ddl(t.ddl)); err != nil {
					return err
				}
				continue
			}
			for _, col := range add[t.name] {
				name, _, _ := strings.Cut(col, " ")
				if have[name] {
					continue
				}
				if _, err := tx.ExecContext(ctx, d.q(`ALTER TABLE "`+t.name+`" ADD COLUMN `+col)); err != nil {
					return fmt.Errorf("migrate %s: %w", t.name, err)
				}
			}
		}
		if _, err := tx.ExecContext(ctx, d.q(`CREATE UNIQUE INDEX user_username_key ON "user" (username_key)`)); err != nil {
			return err
		}
		if err := d.dropResourceForeignKeys(ctx, tx); err != nil {
			return err
		}
	}
	for _, t := range tables[4:] {
		if _, err := tx.ExecContext(ctx, d.ddl(t.ddl)); err != nil {
			return err
		}
	}
	for _, ix := range indexes {
		if _, err := tx.ExecContext(ctx, d.ddl(ix)); err != nil {
			return fmt.Errorf("%s: %w", ix, err)
		}
	}
	// Resources of the original were all running VMs, owned through their
	// application.
	if _, err := tx.ExecContext(ctx, d.q(`UPDATE resource SET state = 'running', user_id = (SELECT user_id FROM application WHERE aid = resource.app_id)`)); err != nil {
		return err
	}
	return d.fillUsernameKeys(ctx, tx)
}

// dropResourceForeignKeys removes the original's foreign keys on resource
// (app_id, and service_id on the non-unique service.sid).
func (d *DB) dropResourceForeignKeys(ctx context.Context, tx *sql.Tx) error {
	q, drop := `SELECT constraint_name FROM information_schema.table_constraints WHERE table_schema = DATABASE() AND table_name = 'resource' AND constraint_type = 'FOREIGN KEY'`, "ALTER TABLE resource DROP FOREIGN KEY `%s`"
	if d.dialect == "postgres" {
		q, drop = `SELECT conname FROM pg_constraint WHERE conrelid = 'resource'::regclass AND contype = 'f'`, `ALTER TABLE resource DROP CONSTRAINT "%s"`
	}
	rows, err := tx.QueryContext(ctx, q)
	if err != nil {
		return err
	}
	var fks []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return err
		}
		fks = append(fks, n)
	}
	rows.Close()
	for _, n := range fks {
		if _, err := tx.ExecContext(ctx, fmt.Sprintf(drop, n)); err != nil {
			return fmt.Errorf("drop foreign key %s of resource: %w", n, err)
		}
	}
	return nil
}

// fillUsernameKeys sets the confusable key of every user; the later of two
// existing look-alike names keeps a NULL key (it was accepted before, it
// stays), new ones are refused.
func (d *DB) fillUsernameKeys(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, d.q(`SELECT uid, username FROM "user" ORDER BY uid`))
	if err != nil {
		return err
	}
	type u struct {
		id   int64
		name string
	}
	var all []u
	for rows.Next() {
		var x u
		if err := rows.Scan(&x.id, &x.name); err != nil {
			rows.Close()
			return err
		}
		all = append(all, x)
	}
	rows.Close()
	seen := map[string]bool{}
	for _, x := range all {
		k := names.Key(x.name)
		if seen[k] {
			continue
		}
		seen[k] = true
		if _, err := tx.ExecContext(ctx, d.q(`UPDATE "user" SET username_key = ? WHERE uid = ?`), k, x.id); err != nil {
			return err
		}
	}
	return nil
}

// fromCPS1 moves cps's first schema (SQLite only) to this one: users and
// applications carry over; its services were manager VMs of a protocol no
// ConPaaS component spoke, so they are dropped (stop them with the old
// version first: any still running are listed in the error).
func (d *DB) fromCPS1(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `SELECT instance_id, cloud FROM instances WHERE terminated = ''`)
	if err != nil {
		return err
	}
	var live []string
	for rows.Next() {
		var id, cloud string
		rows.Scan(&id, &cloud)
		live = append(live, cloud+"/"+id)
	}
	rows.Close()
	if len(live) > 0 {
		return fmt.Errorf("the database has manager VMs started by an earlier cpsdirector (%s): stop their services with that version before upgrading", strings.Join(live, ", "))
	}
	if err := d.create(ctx, tx); err != nil {
		return err
	}
	stmts := []string{
		`INSERT INTO "user" (uid, username, email, password, created, credit, cert_gen) SELECT id, username, NULLIF(email, ''), password_hash, created, 50, 1 FROM users`,
		`INSERT INTO application (aid, name, status, user_id) SELECT id, name, 'INIT', user_id FROM applications`,
		`DROP TABLE instances`, `DROP TABLE services`, `DROP TABLE applications`, `DROP TABLE users`,
	}
	for _, s := range stmts {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("migrate from schema 1: %s: %w", s, err)
		}
	}
	return d.fillUsernameKeys(ctx, tx)
}

// Version returns the stored schema version.
func (d *DB) Version(ctx context.Context) (int, error) {
	var v int
	err := d.sql.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return v, err
}
