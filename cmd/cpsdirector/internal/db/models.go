package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// User is a row of the original's user table.
type User struct {
	UID         int64
	Username    string
	Fname       sql.NullString
	Lname       sql.NullString
	Email       sql.NullString
	Affiliation sql.NullString
	// Password is the hash: bcrypt, or the original's unsalted MD5 hex
	// (upgraded at the next login).
	Password sql.NullString
	Created  Time
	Credit   int64
	UUID     sql.NullString
	OpenID   sql.NullString
	// CertGen is the generation of the user's certificates: resetting the
	// password or deleting the user revokes every certificate of an older
	// generation (it is in their serial number).
	CertGen int64
}

// Application is a row of application, with its manager VM if any.
type Application struct {
	AID     int64
	Name    sql.NullString
	Status  string
	UserID  int64
	Manager *Resource
}

// Application states, as the original's.
const (
	AppInit     = "INIT"
	AppPrologue = "PROLOGUE"
	AppRunning  = "RUNNING"
	AppAdapting = "ADAPTING"
	AppEpilogue = "EPILOGUE"
	AppStopped  = "STOPPED"
	AppError    = "ERROR"
)

// Service is a row of service.
type Service struct {
	RecID         int64
	SID           int64
	Name          sql.NullString
	Type          sql.NullString
	State         sql.NullString
	Created       Time
	Cloud         sql.NullString
	Subnet        sql.NullString
	ApplicationID int64
}

// Resource is a VM the director started (a row of resource).
type Resource struct {
	RID       int64
	VMID      string
	AppID     int64
	ServiceID int64
	Charged   int64
	IP        string
	Role      string // manager or agent
	Cloud     string // "iaas" is the default cloud
	Created   Time
	PrivateIP string
	// State: starting (the intent, recorded before the cloud call; VMID is
	// "pending:" + Token), booting (the VM exists, its manager or agent has
	// not answered yet), running.
	State   string
	Token   string
	Starter string // the director that started it
	UserID  int64
	AppName string // joined, for /list_resources
}

// Resource states.
const (
	ResStarting = "starting"
	ResBooting  = "booting"
	ResRunning  = "running"
	// ResDeleting: being terminated; the row goes once the cloud confirms.
	ResDeleting = "deleting"
)

const userCols = `uid, username, fname, lname, email, affiliation, password, created, credit, uuid, openid, cert_gen`

func scanUser(sc interface{ Scan(...any) error }) (*User, error) {
	var u User
	var credit sql.NullInt64
	err := sc.Scan(&u.UID, &u.Username, &u.Fname, &u.Lname, &u.Email, &u.Affiliation, &u.Password, &u.Created, &credit, &u.UUID, &u.OpenID, &u.CertGen)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	u.Credit = credit.Int64
	return &u, err
}

func (d *DB) userBy(ctx context.Context, col string, v any) (*User, error) {
	st, err := d.prepared(ctx, `SELECT `+userCols+` FROM "user" WHERE `+col+` = ?`)
	if err != nil {
		return nil, err
	}
	return scanUser(st.QueryRowContext(ctx, v))
}

// UserByName looks a user up by name.
func (d *DB) UserByName(ctx context.Context, name string) (*User, error) {
	return d.userBy(ctx, "username", name)
}

// UserByID looks a user up by id.
func (d *DB) UserByID(ctx context.Context, id int64) (*User, error) { return d.userBy(ctx, "uid", id) }

// UserByUUID looks a user up by the uuid an identity provider assigned.
func (d *DB) UserByUUID(ctx context.Context, uuid string) (*User, error) {
	return d.userBy(ctx, "uuid", uuid)
}

// UserByOpenID looks a user up by OpenID.
func (d *DB) UserByOpenID(ctx context.Context, openid string) (*User, error) {
	return d.userBy(ctx, "openid", openid)
}

// Users lists every user by name.
func (d *DB) Users(ctx context.Context) ([]User, error) {
	rows, err := d.sql.QueryContext(ctx, d.q(`SELECT `+userCols+` FROM "user" ORDER BY username`))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *u)
	}
	return out, rows.Err()
}

// NewUser is what CreateUser stores.
type NewUser struct {
	Username, Key                    string
	Fname, Lname, Email, Affiliation sql.NullString
	PasswordHash                     string
	Credit                           int64
	UUID, OpenID                     sql.NullString
}

// Conflict says which unique field a new user collides on.
type Conflict struct{ Field, Value string }

func (c *Conflict) Error() string { return fmt.Sprintf("%s %q is taken", c.Field, c.Value) }

// CreateUser adds a user and, as the original's create_user did, an
// application "New Application" for them. It returns a *Conflict when the
// name (or a look-alike of it) or the e-mail address is taken.
func (d *DB) CreateUser(ctx context.Context, n NewUser) (*User, error) {
	if n.Credit > MaxCredit {
		return nil, ErrCreditTooLarge
	}
	var id int64
	err := d.tx(ctx, func(tx *sql.Tx) error {
		var c int
		if err := tx.QueryRowContext(ctx, d.q(`SELECT COUNT(*) FROM "user" WHERE username = ? OR username_key = ?`), n.Username, n.Key).Scan(&c); err != nil {
			return err
		}
		if c > 0 {
			return &Conflict{"username", n.Username}
		}
		if n.Email.Valid && n.Email.String != "" {
			if err := tx.QueryRowContext(ctx, d.q(`SELECT COUNT(*) FROM "user" WHERE email = ?`), n.Email.String).Scan(&c); err != nil {
				return err
			}
			if c > 0 {
				return &Conflict{"email", n.Email.String}
			}
		}
		var err error
		id, err = d.insert(ctx, tx, "uid", `INSERT INTO "user" (username, fname, lname, email, affiliation, password, created, credit, uuid, openid, username_key, cert_gen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)`,
			n.Username, n.Fname, n.Lname, n.Email, n.Affiliation, n.PasswordHash, dbTime(Now()), n.Credit, n.UUID, n.OpenID, n.Key)
		if isUnique(err) {
			return &Conflict{"username", n.Username}
		}
		if err != nil {
			return err
		}
		_, err = d.insert(ctx, tx, "aid", `INSERT INTO application (name, status, user_id) VALUES (?, ?, ?)`, "New Application", AppInit, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return d.UserByID(ctx, id)
}

// SetPassword stores a new hash. With revoke, the user's certificate
// generation moves on, so every certificate issued before stops working.
func (d *DB) SetPassword(ctx context.Context, uid int64, hash string, revoke bool) error {
	q := `UPDATE "user" SET password = ? WHERE uid = ?`
	if revoke {
		q = `UPDATE "user" SET password = ?, cert_gen = cert_gen + 1 WHERE uid = ?`
	}
	res, err := d.exec(ctx, d.sql, q, hash, uid)
	if err != nil {
		return fmt.Errorf("set password: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// UpgradePassword replaces the MD5 hash old with a bcrypt one, unless
// another login upgraded it first.
func (d *DB) UpgradePassword(ctx context.Context, uid int64, old, hash string) error {
	_, err := d.exec(ctx, d.sql, `UPDATE "user" SET password = ? WHERE uid = ? AND password = ?`, hash, uid, old)
	return err
}

// DeleteUser removes a user with their (stopped) applications. It fails
// while any of their VMs exists.
func (d *DB) DeleteUser(ctx context.Context, uid int64) error {
	return d.tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, d.q(`SELECT COUNT(*) FROM resource r JOIN application a ON a.aid = r.app_id WHERE a.user_id = ?`), uid).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("the user has %d VMs: stop their applications first", n)
		}
		for _, q := range []string{
			`DELETE FROM service WHERE application_id IN (SELECT aid FROM application WHERE user_id = ?)`,
			`DELETE FROM volume WHERE app_id IN (SELECT aid FROM application WHERE user_id = ?)`,
			`DELETE FROM application WHERE user_id = ?`,
		} {
			if _, err := d.exec(ctx, tx, q, uid); err != nil {
				return err
			}
		}
		res, err := d.exec(ctx, tx, `DELETE FROM "user" WHERE uid = ?`, uid)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		return nil
	})
}

// Debit takes n credits from the user if they have at least n, atomically
// (one conditional UPDATE: concurrent starts cannot overdraw).
func (d *DB) Debit(ctx context.Context, uid, n int64) (bool, error) {
	res, err := d.exec(ctx, d.sql, `UPDATE "user" SET credit = credit - ? WHERE uid = ? AND credit >= ?`, n, uid, n)
	if err != nil {
		return false, fmt.Errorf("debit credit: %w", err)
	}
	got, err := res.RowsAffected()
	return got == 1, err
}

// AddCredit adds n (which may be negative) and returns the new credit; as
// the original's add_credit, credit does not go below zero.
// The balance stays at most MaxCredit (ErrCreditTooLarge otherwise, and
// nothing changes), so credit + n never overflows.
func (d *DB) AddCredit(ctx context.Context, uid, n int64) (int64, error) {
	// Taking any amount cannot overflow: credit is never negative.
	if n > MaxCredit {
		return 0, ErrCreditTooLarge
	}
	var c int64
	err := d.tx(ctx, func(tx *sql.Tx) error {
		// Checked here rather than in the UPDATE: a bound passed as a
		// parameter takes the column's type, 32-bit on PostgreSQL. The
		// cap is far enough below 2^63 that a concurrent change cannot
		// take the balance to an overflow.
		err := tx.QueryRowContext(ctx, d.q(`SELECT credit FROM "user" WHERE uid = ?`), uid).Scan(&c)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if n > 0 && c > MaxCredit-n {
			return ErrCreditTooLarge
		}
		if _, err := d.exec(ctx, tx, `UPDATE "user" SET credit = CASE WHEN credit + ? < 0 THEN 0 ELSE credit + ? END WHERE uid = ?`, n, n, uid); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, d.q(`SELECT credit FROM "user" WHERE uid = ?`), uid).Scan(&c)
	})
	return c, err
}

// Refund gives back n credits taken by Debit for a VM that was not made.
func (d *DB) Refund(ctx context.Context, uid, n int64) error {
	_, err := d.exec(ctx, d.sql, `UPDATE "user" SET credit = credit + ? WHERE uid = ?`, n, uid)
	return err
}

// Charge moves a resource's charged hours from old to hours and takes the
// difference from its user's credit, in one transaction that does nothing
// if another director charged it meanwhile. It returns the user's credit.
func (d *DB) Charge(ctx context.Context, r *Resource, old, hours int64) (charged bool, credit int64, err error) {
	err = d.tx(ctx, func(tx *sql.Tx) error {
		res, err := d.exec(ctx, tx, `UPDATE resource SET charged = ? WHERE rid = ? AND charged = ?`, hours, r.RID, old)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return nil
		}
		charged = true
		if _, err := d.exec(ctx, tx, `UPDATE "user" SET credit = credit - ? WHERE uid = ?`, hours-old, r.UserID); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, d.q(`SELECT credit FROM "user" WHERE uid = ?`), r.UserID).Scan(&credit)
	})
	return charged, credit, err
}

const appCols = `a.aid, a.name, a.status, a.user_id, r.rid, r.vmid, r.ip, r.cloud, r.state`

// The manager VM joins in once it exists (the original's to_dict showed
// the manager of the Resource table, which only held ready VMs).
const appFrom = ` FROM application a LEFT JOIN resource r ON r.app_id = a.aid AND r.role = 'manager' AND r.state = 'running'`

func scanApp(sc interface{ Scan(...any) error }) (*Application, error) {
	var a Application
	var status sql.NullString
	var uid sql.NullInt64
	var rid sql.NullInt64
	var vmid, ip, cloud, state sql.NullString
	if err := sc.Scan(&a.AID, &a.Name, &status, &uid, &rid, &vmid, &ip, &cloud, &state); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	a.Status, a.UserID = status.String, uid.Int64
	if rid.Valid {
		a.Manager = &Resource{RID: rid.Int64, VMID: vmid.String, IP: ip.String, Cloud: cloud.String, State: state.String, Role: "manager", AppID: a.AID}
	}
	return &a, nil
}

// Applications lists user's applications in creation order.
func (d *DB) Applications(ctx context.Context, uid int64) ([]Application, error) {
	st, err := d.prepared(ctx, `SELECT `+appCols+appFrom+` WHERE a.user_id = ? ORDER BY a.aid`)
	if err != nil {
		return nil, fmt.Errorf("list applications: %w", err)
	}
	rows, err := st.QueryContext(ctx, uid)
	if err != nil {
		return nil, fmt.Errorf("list applications: %w", err)
	}
	defer rows.Close()
	out := []Application{}
	for rows.Next() {
		a, err := scanApp(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *a)
	}
	return out, rows.Err()
}

// Application returns user's application aid; ErrNotFound if it does not
// exist or belongs to another user.
func (d *DB) Application(ctx context.Context, uid, aid int64) (*Application, error) {
	return scanApp(d.sql.QueryRowContext(ctx, d.q(`SELECT `+appCols+appFrom+` WHERE a.aid = ? AND a.user_id = ?`), aid, uid))
}

// DefaultApplication is the user's first application (the original's
// get_default_app).
func (d *DB) DefaultApplication(ctx context.Context, uid int64) (*Application, error) {
	return scanApp(d.sql.QueryRowContext(ctx, d.q(`SELECT `+appCols+appFrom+` WHERE a.user_id = ? ORDER BY a.aid LIMIT 1`), uid))
}

// CreateApplication adds an application unless user already has one of
// that name (ErrExists).
func (d *DB) CreateApplication(ctx context.Context, uid int64, name string) (*Application, error) {
	var id int64
	err := d.tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, d.q(`SELECT COUNT(*) FROM application WHERE user_id = ? AND name = ?`), uid, name).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return ErrExists
		}
		var err error
		id, err = d.insert(ctx, tx, "aid", `INSERT INTO application (name, status, user_id) VALUES (?, ?, ?)`, name, AppInit, uid)
		return err
	})
	if err != nil {
		return nil, err
	}
	return d.Application(ctx, uid, id)
}

// RenameApplication renames; ErrExists if user has another one so named.
func (d *DB) RenameApplication(ctx context.Context, uid, aid int64, name string) error {
	return d.tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, d.q(`SELECT COUNT(*) FROM application WHERE user_id = ? AND name = ?`), uid, name).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return ErrExists
		}
		res, err := d.exec(ctx, tx, `UPDATE application SET name = ? WHERE aid = ? AND user_id = ?`, name, aid, uid)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		return nil
	})
}

// SetAppStatus moves an application to status if it is in one of from
// (any state when from is empty); it reports whether it did.
func (d *DB) SetAppStatus(ctx context.Context, aid int64, status string, from ...string) (bool, error) {
	q := `UPDATE application SET status = ? WHERE aid = ?`
	args := []any{status, aid}
	if len(from) > 0 {
		q += ` AND status IN (?` + repeat(", ?", len(from)-1) + `)`
		for _, f := range from {
			args = append(args, f)
		}
	}
	res, err := d.exec(ctx, d.sql, q, args...)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

func repeat(s string, n int) string {
	out := ""
	for i := 0; i < n; i++ {
		out += s
	}
	return out
}

// DeleteApplication removes an application and its services, and its
// volume records unless keepVolumes (volumes being deleted forget
// themselves). Its VMs are gone: callers remove resources first.
func (d *DB) DeleteApplication(ctx context.Context, aid int64, keepVolumes bool) error {
	qs := []string{`DELETE FROM service WHERE application_id = ?`, `DELETE FROM volume WHERE app_id = ?`, `DELETE FROM application WHERE aid = ?`}
	if keepVolumes {
		qs = append(qs[:1], qs[2])
	}
	return d.tx(ctx, func(tx *sql.Tx) error {
		for _, q := range qs {
			if _, err := d.exec(ctx, tx, q, aid); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteServices removes the service rows of an application (stopapp).
func (d *DB) DeleteServices(ctx context.Context, aid int64) error {
	_, err := d.exec(ctx, d.sql, `DELETE FROM service WHERE application_id = ?`, aid)
	return err
}

const serviceCols = `s.rec_id, s.sid, s.name, s.type, s.state, s.created, s.cloud, s.subnet, s.application_id`

func scanService(sc interface{ Scan(...any) error }) (*Service, error) {
	var s Service
	var sid, appID sql.NullInt64
	err := sc.Scan(&s.RecID, &sid, &s.Name, &s.Type, &s.State, &s.Created, &s.Cloud, &s.Subnet, &appID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	s.SID, s.ApplicationID = sid.Int64, appID.Int64
	return &s, err
}

// AddService records a service the application manager created.
func (d *DB) AddService(ctx context.Context, s *Service) error {
	s.Created = Time{Now()}
	id, err := d.insert(ctx, d.sql, "rec_id", `INSERT INTO service (sid, name, type, state, created, application_id) VALUES (?, ?, ?, ?, ?, ?)`,
		s.SID, s.Name, s.Type, s.State, dbTime(s.Created.Time), s.ApplicationID)
	s.RecID = id
	return err
}

// Services lists the services of user's applications (of one if aid > 0).
func (d *DB) Services(ctx context.Context, uid, aid int64) ([]Service, error) {
	rows, err := d.sql.QueryContext(ctx, d.q(`SELECT `+serviceCols+` FROM service s JOIN application a ON a.aid = s.application_id WHERE a.user_id = ? AND (? = 0 OR a.aid = ?) ORDER BY s.rec_id`), uid, aid, aid)
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

// Service returns service sid of user's application aid.
func (d *DB) Service(ctx context.Context, uid, aid, sid int64) (*Service, error) {
	return scanService(d.sql.QueryRowContext(ctx, d.q(`SELECT `+serviceCols+` FROM service s JOIN application a ON a.aid = s.application_id WHERE a.user_id = ? AND a.aid = ? AND s.sid = ?`), uid, aid, sid))
}

// RenameService renames service rec.
func (d *DB) RenameService(ctx context.Context, recID int64, name string) error {
	_, err := d.exec(ctx, d.sql, `UPDATE service SET name = ? WHERE rec_id = ?`, name, recID)
	return err
}

// DeleteService removes service rec.
func (d *DB) DeleteService(ctx context.Context, recID int64) error {
	_, err := d.exec(ctx, d.sql, `DELETE FROM service WHERE rec_id = ?`, recID)
	return err
}

const resCols = `r.rid, r.vmid, r.app_id, r.service_id, r.charged, r.ip, r.role, r.cloud, r.created, r.private_ip, r.state, r.token, r.starter, r.user_id, a.name`

func scanResource(sc interface{ Scan(...any) error }) (*Resource, error) {
	var r Resource
	var app, svc, charged, uid sql.NullInt64
	var ip, role, cloud, pip, token, starter, name sql.NullString
	err := sc.Scan(&r.RID, &r.VMID, &app, &svc, &charged, &ip, &role, &cloud, &r.Created, &pip, &r.State, &token, &starter, &uid, &name)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	r.AppID, r.ServiceID, r.Charged, r.UserID = app.Int64, svc.Int64, charged.Int64, uid.Int64
	r.IP, r.Role, r.Cloud, r.PrivateIP, r.Token, r.Starter, r.AppName = ip.String, role.String, cloud.String, pip.String, token.String, starter.String, name.String
	return &r, err
}

func (d *DB) resources(ctx context.Context, where string, args ...any) ([]Resource, error) {
	rows, err := d.sql.QueryContext(ctx, d.q(`SELECT `+resCols+` FROM resource r LEFT JOIN application a ON a.aid = r.app_id WHERE `+where+` ORDER BY r.rid`), args...)
	if err != nil {
		return nil, fmt.Errorf("list resources: %w", err)
	}
	defer rows.Close()
	var out []Resource
	for rows.Next() {
		r, err := scanResource(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *r)
	}
	return out, rows.Err()
}

// UserResources lists the VMs of user's applications.
func (d *DB) UserResources(ctx context.Context, uid int64) ([]Resource, error) {
	return d.resources(ctx, `a.user_id = ? AND r.state IN ('booting', 'running')`, uid)
}

// AppResources lists the VMs of an application, intents included.
func (d *DB) AppResources(ctx context.Context, aid int64) ([]Resource, error) {
	return d.resources(ctx, `r.app_id = ?`, aid)
}

// ResourcesInState lists resources in one of states (every director's).
func (d *DB) ResourcesInState(ctx context.Context, states ...string) ([]Resource, error) {
	args := []any{}
	for _, s := range states {
		args = append(args, s)
	}
	return d.resources(ctx, `r.state IN (?`+repeat(", ?", len(states)-1)+`)`, args...)
}

// ResourceByVMID returns the VM vmid.
func (d *DB) ResourceByVMID(ctx context.Context, vmid string) (*Resource, error) {
	l, err := d.resources(ctx, `r.vmid = ?`, vmid)
	if err != nil {
		return nil, err
	}
	if len(l) == 0 {
		return nil, ErrNotFound
	}
	return &l[0], nil
}

// ResourceByToken returns the resource whose intent carries token.
func (d *DB) ResourceByToken(ctx context.Context, token string) (*Resource, error) {
	l, err := d.resources(ctx, `r.token = ?`, token)
	if err != nil {
		return nil, err
	}
	if len(l) == 0 {
		return nil, ErrNotFound
	}
	return &l[0], nil
}

// AddIntent records a VM about to be created (state starting), before the
// cloud is asked: a crash after the cloud call leaves a row to reconcile.
func (d *DB) AddIntent(ctx context.Context, r *Resource) error {
	r.Created = Time{Now()}
	r.State = ResStarting
	r.VMID = "pending:" + r.Token
	id, err := d.insert(ctx, d.sql, "rid", `INSERT INTO resource (vmid, app_id, service_id, charged, ip, role, cloud, created, private_ip, state, token, starter, user_id) VALUES (?, ?, ?, ?, '', ?, ?, ?, '', ?, ?, ?, ?)`,
		r.VMID, r.AppID, r.ServiceID, r.Charged, r.Role, r.Cloud, dbTime(r.Created.Time), r.State, r.Token, r.Starter, r.UserID)
	r.RID = id
	return err
}

// SetVM records the VM the cloud created for an intent (state booting).
func (d *DB) SetVM(ctx context.Context, rid int64, vmid, ip, privateIP string) error {
	_, err := d.exec(ctx, d.sql, `UPDATE resource SET vmid = ?, ip = ?, private_ip = ?, state = ? WHERE rid = ?`, vmid, ip, privateIP, ResBooting, rid)
	return err
}

// SetAddresses records a VM's addresses once the cloud assigned them.
func (d *DB) SetAddresses(ctx context.Context, rid int64, ip, privateIP string) error {
	_, err := d.exec(ctx, d.sql, `UPDATE resource SET ip = ?, private_ip = ? WHERE rid = ?`, ip, privateIP, rid)
	return err
}

// SetResourceState moves a resource to state; Starter becomes who (the
// director now looking after it).
func (d *DB) SetResourceState(ctx context.Context, rid int64, state, who string) error {
	_, err := d.exec(ctx, d.sql, `UPDATE resource SET state = ?, starter = ? WHERE rid = ?`, state, who, rid)
	return err
}

// ClaimResource makes director who responsible for a resource left by
// director from, unless someone else claimed it first.
func (d *DB) ClaimResource(ctx context.Context, rid int64, from, who string) (bool, error) {
	res, err := d.exec(ctx, d.sql, `UPDATE resource SET starter = ? WHERE rid = ? AND starter = ?`, who, rid, from)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// DeleteResource removes a resource row.
func (d *DB) DeleteResource(ctx context.Context, rid int64) error {
	_, err := d.exec(ctx, d.sql, `DELETE FROM resource WHERE rid = ?`, rid)
	return err
}

// Volume is a volume a manager asked for.
type Volume struct {
	ID       int64
	VolumeID string
	AppID    int64
	Cloud    string
	VMID     string
}

// AddVolume records a volume of application aid.
func (d *DB) AddVolume(ctx context.Context, v *Volume) error {
	id, err := d.insert(ctx, d.sql, "id", `INSERT INTO volume (volume_id, app_id, cloud, vm_id, created) VALUES (?, ?, ?, ?, ?)`, v.VolumeID, v.AppID, v.Cloud, v.VMID, dbTime(Now()))
	v.ID = id
	return err
}

// AppVolume returns volume volumeID if application aid made it.
func (d *DB) AppVolume(ctx context.Context, aid int64, volumeID string) (*Volume, error) {
	var v Volume
	var cloud, vm sql.NullString
	err := d.sql.QueryRowContext(ctx, d.q(`SELECT id, volume_id, app_id, cloud, vm_id FROM volume WHERE app_id = ? AND volume_id = ?`), aid, volumeID).Scan(&v.ID, &v.VolumeID, &v.AppID, &cloud, &vm)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	v.Cloud, v.VMID = cloud.String, vm.String
	return &v, err
}

// Volumes lists the volumes of application aid (made for VM vmid when
// vmid is not "").
func (d *DB) Volumes(ctx context.Context, aid int64, vmid string) ([]Volume, error) {
	rows, err := d.sql.QueryContext(ctx, d.q(`SELECT id, volume_id, app_id, cloud, vm_id FROM volume WHERE app_id = ? AND (? = '' OR vm_id = ?) ORDER BY id`), aid, vmid, vmid)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Volume
	for rows.Next() {
		var v Volume
		var cloud, vm sql.NullString
		if err := rows.Scan(&v.ID, &v.VolumeID, &v.AppID, &cloud, &vm); err != nil {
			return nil, err
		}
		v.Cloud, v.VMID = cloud.String, vm.String
		out = append(out, v)
	}
	return out, rows.Err()
}

// DeleteVolume forgets a volume.
func (d *DB) DeleteVolume(ctx context.Context, id int64) error {
	_, err := d.exec(ctx, d.sql, `DELETE FROM volume WHERE id = ?`, id)
	return err
}

// Heartbeat records that director who is alive.
func (d *DB) Heartbeat(ctx context.Context, who string) error {
	now := dbTime(Now())
	res, err := d.exec(ctx, d.sql, `UPDATE director_heartbeat SET seen = ? WHERE id = ?`, now, who)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		_, err = d.exec(ctx, d.sql, `INSERT INTO director_heartbeat (id, seen) VALUES (?, ?)`, who, now)
		if isUnique(err) {
			return nil
		}
	}
	return err
}

// Alive lists the directors seen within maxAge.
func (d *DB) Alive(ctx context.Context, maxAge time.Duration) (map[string]bool, error) {
	rows, err := d.sql.QueryContext(ctx, d.q(`SELECT id FROM director_heartbeat WHERE seen >= ?`), dbTime(Now().Add(-maxAge)))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out[id] = true
	}
	return out, rows.Err()
}
