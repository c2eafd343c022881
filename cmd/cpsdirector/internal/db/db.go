// Package db is the director's SQLite database (users, applications,
// services, instances), created on first use with versioned migrations.
// Every query is parameterised; no SQL is ever built from user input.
package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // pure-Go SQLite driver, registered as "sqlite"
)

// migrations[i] brings the schema from version i to i+1. Append only: a
// released migration is never edited.
var migrations = []string{
	`CREATE TABLE users (
		id INTEGER PRIMARY KEY,
		username TEXT NOT NULL UNIQUE,
		email TEXT NOT NULL DEFAULT '',
		password_hash TEXT NOT NULL,
		created TEXT NOT NULL
	);
	CREATE TABLE applications (
		id INTEGER PRIMARY KEY,
		user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		name TEXT NOT NULL,
		created TEXT NOT NULL,
		UNIQUE (user_id, name)
	);
	CREATE TABLE services (
		id INTEGER PRIMARY KEY,
		application_id INTEGER NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
		type TEXT NOT NULL,
		cloud TEXT NOT NULL,
		state TEXT NOT NULL,
		error TEXT NOT NULL DEFAULT '',
		created TEXT NOT NULL,
		updated TEXT NOT NULL
	);
	CREATE INDEX services_application ON services(application_id);
	CREATE TABLE instances (
		id INTEGER PRIMARY KEY,
		service_id INTEGER NOT NULL REFERENCES services(id) ON DELETE CASCADE,
		role TEXT NOT NULL,
		cloud TEXT NOT NULL,
		instance_id TEXT NOT NULL,
		image_id TEXT NOT NULL,
		instance_type TEXT NOT NULL,
		state TEXT NOT NULL,
		created TEXT NOT NULL,
		terminated TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX instances_service ON instances(service_id);`,
}

// SchemaVersion is the version this program writes.
func SchemaVersion() int { return len(migrations) }

// DB wraps the connection pool.
type DB struct {
	sql  *sql.DB
	Path string
}

// ErrNotFound is returned when a row does not exist (or belongs to someone
// else: callers must not be able to tell the difference).
var ErrNotFound = errors.New("not found")

// ErrExists is returned on a uniqueness conflict.
var ErrExists = errors.New("already exists")

// Open opens (creating if needed) the database at path and migrates it.
func Open(ctx context.Context, path string) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create database directory: %w", err)
	}
	// WAL lets readers run while a writer commits; busy_timeout makes
	// concurrent writers wait instead of failing; _txlock=immediate takes
	// the write lock at BEGIN so two read-then-write transactions cannot
	// deadlock.
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
	s, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	s.SetMaxOpenConns(8)
	s.SetMaxIdleConns(8)
	s.SetConnMaxIdleTime(0)
	d := &DB{sql: s, Path: path}
	if err := d.migrate(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("database %s: %w", path, err)
	}
	// The database holds password hashes: owner only.
	if err := os.Chmod(path, 0o600); err != nil {
		s.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	return d, nil
}

// Close closes the pool.
func (d *DB) Close() error { return d.sql.Close() }

func (d *DB) migrate(ctx context.Context) error {
	tx, err := d.sql.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin migration: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_version: %w", err)
	}
	var v int
	err = tx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (0)`); err != nil {
			return err
		}
	} else if err != nil {
		return fmt.Errorf("read schema_version: %w", err)
	}
	if v > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this cpsdirector understands (%d): upgrade cpsdirector", v, len(migrations))
	}
	for ; v < len(migrations); v++ {
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			return fmt.Errorf("migration %d: %w", v+1, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE schema_version SET version = ?`, v+1); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Version returns the stored schema version.
func (d *DB) Version(ctx context.Context) (int, error) {
	var v int
	err := d.sql.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v)
	return v, err
}

// Ping checks the database is readable and writable (a write transaction
// that is rolled back).
func (d *DB) Ping(ctx context.Context) error {
	tx, err := d.sql.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	_, err = tx.ExecContext(ctx, `UPDATE schema_version SET version = version`)
	return err
}

func now() string { return time.Now().UTC().Format(time.RFC3339) }
