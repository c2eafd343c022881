package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// User is a director account.
type User struct {
	ID           int64  `json:"id"`
	Username     string `json:"username"`
	Email        string `json:"email,omitempty"`
	PasswordHash string `json:"-"`
	Created      string `json:"created"`
}

// Application groups services of one user.
type Application struct {
	ID      int64  `json:"id"`
	UserID  int64  `json:"-"`
	Name    string `json:"name"`
	Created string `json:"created"`
}

// Service is one ConPaaS service (its manager VM) in an application.
type Service struct {
	ID            int64  `json:"id"`
	ApplicationID int64  `json:"application_id"`
	Type          string `json:"type"`
	Cloud         string `json:"cloud"`
	State         string `json:"state"`
	Error         string `json:"error,omitempty"`
	Created       string `json:"created"`
	Updated       string `json:"updated"`
	// Manager is the manager VM, when one was started.
	Manager *Instance `json:"manager,omitempty"`
}

// Instance is a VM started by the director.
type Instance struct {
	ID           int64  `json:"-"`
	ServiceID    int64  `json:"-"`
	Role         string `json:"role"`
	Cloud        string `json:"cloud"`
	InstanceID   string `json:"instance_id"`
	ImageID      string `json:"image_id"`
	InstanceType string `json:"instance_type"`
	State        string `json:"state"`
	Created      string `json:"created"`
	Terminated   string `json:"terminated,omitempty"`
}

// Service states.
const (
	StateStarting = "starting"
	StateRunning  = "running"
	StateStopped  = "stopped"
	StateError    = "error"
)

func isUnique(err error) bool {
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

// AddUser creates a user; ErrExists if the name is taken.
func (d *DB) AddUser(ctx context.Context, username, email, hash string) (*User, error) {
	u := &User{Username: username, Email: email, PasswordHash: hash, Created: now()}
	res, err := d.sql.ExecContext(ctx, `INSERT INTO users (username, email, password_hash, created) VALUES (?, ?, ?, ?)`,
		u.Username, u.Email, u.PasswordHash, u.Created)
	if isUnique(err) {
		return nil, fmt.Errorf("user %q: %w", username, ErrExists)
	}
	if err != nil {
		return nil, fmt.Errorf("add user: %w", err)
	}
	u.ID, _ = res.LastInsertId()
	return u, nil
}

// SetPassword replaces a user's password hash.
func (d *DB) SetPassword(ctx context.Context, username, hash string) error {
	res, err := d.sql.ExecContext(ctx, `UPDATE users SET password_hash = ? WHERE username = ?`, hash, username)
	if err != nil {
		return fmt.Errorf("set password: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

const userCols = `id, username, email, password_hash, created`

func scanUser(row *sql.Row) (*User, error) {
	var u User
	err := row.Scan(&u.ID, &u.Username, &u.Email, &u.PasswordHash, &u.Created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return &u, nil
}

// UserByName looks a user up by name.
func (d *DB) UserByName(ctx context.Context, name string) (*User, error) {
	return scanUser(d.sql.QueryRowContext(ctx, `SELECT `+userCols+` FROM users WHERE username = ?`, name))
}

// UserByID looks a user up by id.
func (d *DB) UserByID(ctx context.Context, id int64) (*User, error) {
	return scanUser(d.sql.QueryRowContext(ctx, `SELECT `+userCols+` FROM users WHERE id = ?`, id))
}

// CreateApplication adds an application for user.
func (d *DB) CreateApplication(ctx context.Context, userID int64, name string) (*Application, error) {
	a := &Application{UserID: userID, Name: name, Created: now()}
	res, err := d.sql.ExecContext(ctx, `INSERT INTO applications (user_id, name, created) VALUES (?, ?, ?)`, userID, name, a.Created)
	if isUnique(err) {
		return nil, fmt.Errorf("application %q: %w", name, ErrExists)
	}
	if err != nil {
		return nil, fmt.Errorf("create application: %w", err)
	}
	a.ID, _ = res.LastInsertId()
	return a, nil
}

// Applications lists user's applications.
func (d *DB) Applications(ctx context.Context, userID int64) ([]Application, error) {
	rows, err := d.sql.QueryContext(ctx, `SELECT id, user_id, name, created FROM applications WHERE user_id = ? ORDER BY id`, userID)
	if err != nil {
		return nil, fmt.Errorf("list applications: %w", err)
	}
	defer rows.Close()
	out := []Application{}
	for rows.Next() {
		var a Application
		if err := rows.Scan(&a.ID, &a.UserID, &a.Name, &a.Created); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// Application returns user's application id; ErrNotFound if it does not
// exist or belongs to another user.
func (d *DB) Application(ctx context.Context, userID, id int64) (*Application, error) {
	var a Application
	err := d.sql.QueryRowContext(ctx, `SELECT id, user_id, name, created FROM applications WHERE id = ? AND user_id = ?`, id, userID).
		Scan(&a.ID, &a.UserID, &a.Name, &a.Created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return &a, err
}

// DeleteApplication removes an application of user (services and instances
// cascade); callers stop running services first.
func (d *DB) DeleteApplication(ctx context.Context, userID, id int64) error {
	res, err := d.sql.ExecContext(ctx, `DELETE FROM applications WHERE id = ? AND user_id = ?`, id, userID)
	if err != nil {
		return fmt.Errorf("delete application: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// CreateService records a service being started.
func (d *DB) CreateService(ctx context.Context, appID int64, typ, cloud string) (*Service, error) {
	t := now()
	s := &Service{ApplicationID: appID, Type: typ, Cloud: cloud, State: StateStarting, Created: t, Updated: t}
	res, err := d.sql.ExecContext(ctx, `INSERT INTO services (application_id, type, cloud, state, created, updated) VALUES (?, ?, ?, ?, ?, ?)`,
		appID, typ, cloud, s.State, t, t)
	if err != nil {
		return nil, fmt.Errorf("create service: %w", err)
	}
	s.ID, _ = res.LastInsertId()
	return s, nil
}

// SetServiceState updates a service's state and error message.
func (d *DB) SetServiceState(ctx context.Context, id int64, state, msg string) error {
	_, err := d.sql.ExecContext(ctx, `UPDATE services SET state = ?, error = ?, updated = ? WHERE id = ?`, state, msg, now(), id)
	if err != nil {
		return fmt.Errorf("update service: %w", err)
	}
	return nil
}

// AddInstance records a started VM.
func (d *DB) AddInstance(ctx context.Context, in *Instance) error {
	in.Created = now()
	res, err := d.sql.ExecContext(ctx, `INSERT INTO instances (service_id, role, cloud, instance_id, image_id, instance_type, state, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		in.ServiceID, in.Role, in.Cloud, in.InstanceID, in.ImageID, in.InstanceType, in.State, in.Created)
	if err != nil {
		return fmt.Errorf("record instance: %w", err)
	}
	in.ID, _ = res.LastInsertId()
	return nil
}

// SetInstanceState updates a VM's state (terminated also stamps the time).
func (d *DB) SetInstanceState(ctx context.Context, id int64, state string) error {
	term := ""
	if state == "terminated" {
		term = now()
	}
	_, err := d.sql.ExecContext(ctx, `UPDATE instances SET state = ?, terminated = ? WHERE id = ?`, state, term, id)
	return err
}

const serviceCols = `s.id, s.application_id, s.type, s.cloud, s.state, s.error, s.created, s.updated,
	i.id, i.role, i.cloud, i.instance_id, i.image_id, i.instance_type, i.state, i.created, i.terminated`

// The join keeps ownership checks in SQL: a service is only visible
// through an application of the requesting user.
const serviceFrom = ` FROM services s JOIN applications a ON a.id = s.application_id
	LEFT JOIN instances i ON i.service_id = s.id AND i.role = 'manager'`

func scanService(sc interface{ Scan(...any) error }) (*Service, error) {
	var s Service
	var iid sql.NullInt64
	var role, cloud, instID, img, typ, st, created, term sql.NullString
	if err := sc.Scan(&s.ID, &s.ApplicationID, &s.Type, &s.Cloud, &s.State, &s.Error, &s.Created, &s.Updated,
		&iid, &role, &cloud, &instID, &img, &typ, &st, &created, &term); err != nil {
		return nil, err
	}
	if iid.Valid {
		s.Manager = &Instance{ID: iid.Int64, ServiceID: s.ID, Role: role.String, Cloud: cloud.String, InstanceID: instID.String,
			ImageID: img.String, InstanceType: typ.String, State: st.String, Created: created.String, Terminated: term.String}
	}
	return &s, nil
}

// Services lists user's services, of one application if appID > 0.
func (d *DB) Services(ctx context.Context, userID, appID int64) ([]Service, error) {
	rows, err := d.sql.QueryContext(ctx, `SELECT `+serviceCols+serviceFrom+` WHERE a.user_id = ? AND (? = 0 OR a.id = ?) ORDER BY s.id`, userID, appID, appID)
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	defer rows.Close()
	out := []Service{}
	for rows.Next() {
		s, err := scanService(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *s)
	}
	return out, rows.Err()
}

// Service returns user's service id.
func (d *DB) Service(ctx context.Context, userID, id int64) (*Service, error) {
	s, err := scanService(d.sql.QueryRowContext(ctx, `SELECT `+serviceCols+serviceFrom+` WHERE a.user_id = ? AND s.id = ?`, userID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return s, err
}
