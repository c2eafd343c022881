// Package db is the director's database: the original ConPaaS director's
// tables (user, application, service, resource, as its SQLAlchemy models
// made them) plus what cps adds (credit and crash-safety columns, volumes,
// heartbeats, a schema version), on SQLite, MariaDB/MySQL or PostgreSQL
// (DATABASE_URI), so several director processes can share one database.
// An original director.db is migrated in place on first open. Every query
// is parameterised; no SQL is ever built from user input.
package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/conpaas/cps/cmd/cpsdirector/internal/config"
	_ "github.com/go-sql-driver/mysql" // registered as "mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // registered as "pgx"
	_ "modernc.org/sqlite"             // pure-Go SQLite, registered as "sqlite"
)

// DB wraps the connection pool of one dialect.
type DB struct {
	sql     *sql.DB
	dialect string // sqlite, mysql, postgres
	// Where is the database for messages (no password).
	Where string

	qmu sync.Mutex
	qc  map[string]string // rebound queries

	stmts sync.Map // query -> *sql.Stmt, for the hot read paths
}

// prepared returns a prepared statement for query (in SQLite's dialect),
// made once: the pure-Go SQLite otherwise parses every query again, which
// was most of the cost of an authenticated /listapp.
func (d *DB) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := d.stmts.Load(query); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := d.sql.PrepareContext(ctx, d.q(query))
	if err != nil {
		return nil, err
	}
	if old, loaded := d.stmts.LoadOrStore(query, st); loaded {
		st.Close()
		return old.(*sql.Stmt), nil
	}
	return st, nil
}

// ErrNotFound is returned when a row does not exist (or belongs to someone
// else: callers must not be able to tell the difference).
var ErrNotFound = errors.New("not found")

// MaxCredit is the most credit a user may hold. Credit is a 64-bit
// integer, and SQLite turns an overflowing credit + n into a REAL: a
// balance near 2^63 (an operator's "unlimited") became 9.2e18 at the next
// refund, and every read of that user failed afterwards. 2^53 is also the
// largest integer JSON clients written in JavaScript read exactly.
const MaxCredit = 1 << 53

// ErrCreditTooLarge means a credit change would go past MaxCredit.
var ErrCreditTooLarge = fmt.Errorf("credit cannot exceed %d", int64(MaxCredit))

// ErrExists is returned on a uniqueness conflict.
var ErrExists = errors.New("already exists")

// Open connects to the database (creating an SQLite file if needed) and
// migrates it to the current schema.
func Open(ctx context.Context, d config.Database) (*DB, error) {
	db := &DB{dialect: d.Driver, qc: map[string]string{}, Where: d.Redacted()}
	var err error
	switch d.Driver {
	case "sqlite":
		db.sql, err = openSQLite(d.Path)
	case "mysql":
		db.sql, err = sql.Open("mysql", d.DSN)
	case "postgres":
		db.sql, err = sql.Open("pgx", d.DSN)
	default:
		return nil, fmt.Errorf("unknown database driver %q", d.Driver)
	}
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", db.Where, err)
	}
	if d.Driver != "sqlite" {
		db.sql.SetMaxOpenConns(32)
		db.sql.SetMaxIdleConns(32)
		db.sql.SetConnMaxLifetime(time.Hour)
		pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := db.sql.PingContext(pctx)
		cancel()
		if err != nil {
			db.sql.Close()
			return nil, fmt.Errorf("connect to database %s: %w (is the server running and DATABASE_URI right?)", db.Where, err)
		}
	}
	if err := db.migrate(ctx); err != nil {
		db.sql.Close()
		return nil, fmt.Errorf("database %s: %w", db.Where, err)
	}
	if d.Driver == "sqlite" {
		// WAL and SHM exist now; they hold the same data as the
		// database (password hashes): owner only, like it.
		for _, sfx := range []string{"", "-wal", "-shm"} {
			if err := os.Chmod(d.Path+sfx, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
				db.sql.Close()
				return nil, fmt.Errorf("chmod %s: %w", d.Path+sfx, err)
			}
		}
	}
	return db, nil
}

func openSQLite(path string) (*sql.DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create database directory: %w", err)
	}
	// SQLite creates the -wal and -shm files with the database file's
	// permissions: make sure it is 0600 before the first connection.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	f.Close()
	if err := os.Chmod(path, 0o600); err != nil {
		return nil, err
	}
	// WAL lets readers run while a writer commits; busy_timeout makes
	// concurrent writers (and other processes) wait instead of failing;
	// _txlock=immediate takes the write lock at BEGIN so two
	// read-then-write transactions cannot deadlock.
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(20000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
	s, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	s.SetMaxOpenConns(8)
	s.SetMaxIdleConns(8)
	s.SetConnMaxIdleTime(0)
	return s, nil
}

// Close closes the pool.
func (d *DB) Close() error {
	d.stmts.Range(func(_, v any) bool { v.(*sql.Stmt).Close(); return true })
	return d.sql.Close()
}

// Dialect is sqlite, mysql or postgres.
func (d *DB) Dialect() string { return d.dialect }

// q adapts a query written for SQLite to the dialect: $n placeholders for
// PostgreSQL, backquoted identifiers for MySQL ("user" is a reserved word
// in PostgreSQL and needs quoting everywhere).
func (d *DB) q(query string) string {
	if d.dialect == "sqlite" {
		return query
	}
	d.qmu.Lock()
	defer d.qmu.Unlock()
	if r, ok := d.qc[query]; ok {
		return r
	}
	var b strings.Builder
	n := 0
	for _, c := range query {
		switch {
		case c == '?' && d.dialect == "postgres":
			n++
			b.WriteString("$" + strconv.Itoa(n))
		case c == '"' && d.dialect == "mysql":
			b.WriteByte('`')
		default:
			b.WriteRune(c)
		}
	}
	d.qc[query] = b.String()
	return d.qc[query]
}

func (d *DB) exec(ctx context.Context, x execer, query string, args ...any) (sql.Result, error) {
	return x.ExecContext(ctx, d.q(query), args...)
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// insert runs an INSERT and returns the new row's id (column idCol).
func (d *DB) insert(ctx context.Context, x execer, idCol, query string, args ...any) (int64, error) {
	if d.dialect == "postgres" {
		var id int64
		err := x.QueryRowContext(ctx, d.q(query+" RETURNING "+idCol), args...).Scan(&id)
		return id, err
	}
	res, err := x.ExecContext(ctx, d.q(query), args...)
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

// tx runs fn in a transaction, retrying a few times when the database
// reports a deadlock or a serialization failure (MySQL under concurrent
// credit updates; SQLite's busy_timeout already waits).
func (d *DB) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		var tx *sql.Tx
		tx, err = d.sql.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		err = fn(tx)
		if err == nil {
			err = tx.Commit()
		} else {
			tx.Rollback()
		}
		if err == nil || !retryable(err) {
			return err
		}
		time.Sleep(time.Duration(attempt+1) * 20 * time.Millisecond)
	}
	return err
}

func retryable(err error) bool {
	s := err.Error()
	return strings.Contains(s, "Error 1213") || strings.Contains(s, "Error 1205") || // MySQL deadlock, lock wait
		strings.Contains(s, "SQLSTATE 40001") || strings.Contains(s, "SQLSTATE 40P01") || // PostgreSQL
		strings.Contains(s, "SQLITE_BUSY") || strings.Contains(s, "database is locked")
}

func isUnique(err error) bool {
	if err == nil {
		return false
	}
	s := err.Error()
	return strings.Contains(s, "UNIQUE constraint failed") || strings.Contains(s, "Error 1062") || strings.Contains(s, "SQLSTATE 23505")
}

// Ping checks the database is readable and writable (a write transaction
// that is rolled back).
func (d *DB) Ping(ctx context.Context) error {
	tx, err := d.sql.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	_, err = d.exec(ctx, tx, `UPDATE schema_version SET version = version`)
	return err
}

// Time is a DATETIME column: SQLite keeps SQLAlchemy's text form, MySQL
// gives bytes, PostgreSQL a time.Time. Times are UTC.
type Time struct{ time.Time }

// timeLayout is how SQLAlchemy stored DateTime in SQLite, and what every
// dialect accepts as input.
const timeLayout = "2006-01-02 15:04:05.000000"

// Scan implements sql.Scanner.
func (t *Time) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		t.Time = time.Time{}
		return nil
	case time.Time:
		t.Time = x.UTC()
		return nil
	case []byte:
		return t.parse(string(x))
	case string:
		return t.parse(x)
	}
	return fmt.Errorf("cannot read %T as a time", v)
}

func (t *Time) parse(s string) error {
	for _, l := range []string{timeLayout, "2006-01-02 15:04:05.999999999", "2006-01-02 15:04:05", time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999-07:00"} {
		if tm, err := time.Parse(l, s); err == nil {
			t.Time = tm.UTC()
			return nil
		}
	}
	return fmt.Errorf("cannot parse time %q", s)
}

// ISO is Python's datetime.isoformat() of the naive UTC time (what the
// original's to_dict sent).
func (t Time) ISO() string {
	if t.Nanosecond()/1000 == 0 {
		return t.UTC().Format("2006-01-02T15:04:05")
	}
	return t.UTC().Format("2006-01-02T15:04:05.000000")
}

// Str is Python's str(datetime) (the original's Resource.to_dict).
func (t Time) Str() string {
	if t.Nanosecond()/1000 == 0 {
		return t.UTC().Format("2006-01-02 15:04:05")
	}
	return t.UTC().Format(timeLayout)
}

func dbTime(t time.Time) string { return t.UTC().Format(timeLayout) }

// Now is the current time as stored.
func Now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }
