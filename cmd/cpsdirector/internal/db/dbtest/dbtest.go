// Package dbtest makes databases as the original ConPaaS director left
// them, for migration tests.
package dbtest

// OriginalSQLite is the schema SQLAlchemy's create_all() wrote for the
// original director's models (cpsdirector/user.py User, application.py
// Application, service.py Service, cloud.py Resource) on SQLite: no
// AUTOINCREMENT (SQLAlchemy leaves it out unless asked), foreign keys as
// declared, resource.service_id pointing at the non-unique service.sid.
const OriginalSQLite = `
CREATE TABLE user (
	uid INTEGER NOT NULL,
	username VARCHAR(80) NOT NULL,
	fname VARCHAR(256),
	lname VARCHAR(256),
	email VARCHAR(256),
	affiliation VARCHAR(256),
	password VARCHAR(256),
	created DATETIME,
	credit INTEGER,
	uuid VARCHAR(80),
	openid VARCHAR(200),
	PRIMARY KEY (uid),
	UNIQUE (username),
	UNIQUE (email)
);
CREATE TABLE application (
	aid INTEGER NOT NULL,
	name VARCHAR(256),
	status VARCHAR(256),
	user_id INTEGER,
	PRIMARY KEY (aid),
	FOREIGN KEY(user_id) REFERENCES user (uid)
);
CREATE TABLE service (
	rec_id INTEGER NOT NULL,
	sid INTEGER,
	name VARCHAR(256),
	type VARCHAR(32),
	state VARCHAR(32),
	created DATETIME,
	cloud VARCHAR(128),
	subnet VARCHAR(18),
	application_id INTEGER,
	PRIMARY KEY (rec_id),
	FOREIGN KEY(application_id) REFERENCES application (aid)
);
CREATE TABLE resource (
	rid INTEGER NOT NULL,
	vmid VARCHAR(80) NOT NULL,
	app_id INTEGER,
	service_id INTEGER,
	charged INTEGER,
	ip VARCHAR(80),
	role VARCHAR(10),
	cloud VARCHAR(20),
	created DATETIME,
	PRIMARY KEY (rid),
	UNIQUE (vmid),
	FOREIGN KEY(app_id) REFERENCES application (aid),
	FOREIGN KEY(service_id) REFERENCES service (sid)
);
`

// OriginalRows are users as the original stored them: the password is
// hashlib.md5(password).hexdigest(), times SQLAlchemy's SQLite text form.
// alice's password is "alice-password", bob's "bob" (shorter than cps
// would accept today: it must still work), carol's "carol-password".
const OriginalRows = `
INSERT INTO user VALUES (1, 'alice', 'Alice', 'Liddell', 'alice@example.org', 'VU', 'dac24dcc2864a1e7f549fd6c7795c7b8', '2015-03-04 10:11:12.131415', 42, NULL, NULL);
INSERT INTO user VALUES (2, 'bob', '', '', 'bob@example.org', '', '9f9d51bc70ef21ca5c14f307980a29d8', '2015-03-05 10:11:12.000000', 7, '', '');
INSERT INTO user VALUES (3, 'carol', NULL, NULL, 'carol@example.org', NULL, '0ea43b0cf41532d0072bf83b8e306427', '2015-03-06 08:00:00.000000', 0, 'uuid-carol', NULL);
INSERT INTO application VALUES (1, 'New Application', 'INIT', 1);
INSERT INTO application VALUES (2, 'shop', 'RUNNING', 1);
INSERT INTO application VALUES (3, 'New Application', 'INIT', 2);
INSERT INTO service VALUES (1, 1, 'New php service', 'php', 'INIT', '2015-03-04 11:00:00.000000', NULL, NULL, 2);
INSERT INTO resource VALUES (1, 'i-0123456789abcdef0', 2, 0, 1, '203.0.113.10', 'manager', 'iaas', '2015-03-04 10:30:00.000000');
`
