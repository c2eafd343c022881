// Package osauth is how cps authenticates to an OpenStack cloud, for
// cpsimage's Glance target and the director's compute driver alike:
// Keystone v3 with a password, a token or an application credential, from a
// clouds.yaml entry or the OS_* variables of an openrc file, read the way
// the OpenStack CLI reads them. FromEnv reads the environment and only
// cmd/ calls it; the rest of cps gets a Config. A failure says in one line which setting
// is wrong: Keystone answers 401 to a wrong user, password and project
// alike, so a refused project-scoped login is retried unscoped to tell the
// password from the project.
package osauth

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/config"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
	tokens3 "github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"
)

// Config is how to authenticate to one cloud.
type Config struct {
	Auth gophercloud.AuthOptions
	// Endpoints picks the service endpoints: region and interface.
	Endpoints gophercloud.EndpointOpts
	TLS       *tls.Config
	// Cloud is the clouds.yaml entry the settings come from ("": OS_*).
	Cloud string
}

// setting names a setting the way the user wrote it: the OS_* variable,
// or the key of the clouds.yaml entry.
func (c Config) setting(env, yaml string) string {
	if c.Cloud != "" {
		return fmt.Sprintf("%s of cloud %q in clouds.yaml", yaml, c.Cloud)
	}
	return env
}

// Password is a password login to a project (the director's settings:
// USER, PASSWORD, PROJECT and DOMAIN for both the user and the project).
func Password(authURL, user, password, project, domain, region string) Config {
	return Config{Auth: gophercloud.AuthOptions{IdentityEndpoint: authURL, Username: user, Password: password,
		TenantName: project, DomainName: domain, AllowReauth: true}, Endpoints: gophercloud.EndpointOpts{Region: region}}
}

// FromEnv reads the settings as the OpenStack CLI does: the clouds.yaml
// entry cloud (else $OS_CLOUD) when one is named, else the OS_* variables.
// OS_AUTH_TYPE=token (or v3token) with OS_TOKEN authenticates with a token.
func FromEnv(cloud string) (Config, error) {
	getenv := os.Getenv
	if cloud = cmp.Or(cloud, getenv("OS_CLOUD")); cloud != "" {
		// clouds.Parse reads OS_CLIENT_CONFIG_FILE, OS_REGION_NAME and
		// OS_INTERFACE itself, as the CLI does.
		ao, eo, tlsCfg, err := clouds.Parse(clouds.WithCloudName(cloud))
		if err != nil {
			return Config{}, fmt.Errorf("read OpenStack credentials from clouds.yaml (cloud %q): %w", cloud, err)
		}
		ao.AllowReauth = ao.TokenID == ""
		return Config{Auth: ao, Endpoints: eo, TLS: tlsCfg, Cloud: cloud}, nil
	}
	ao, err := authOptionsFromEnv()
	if err != nil {
		return Config{}, fmt.Errorf("no OpenStack credentials: set OS_AUTH_URL, OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME, OS_USER_DOMAIN_NAME, OS_PROJECT_DOMAIN_NAME (an openrc file), or OS_CLOUD for a clouds.yaml entry: %w", err)
	}
	ao.AllowReauth = ao.TokenID == ""
	eo := gophercloud.EndpointOpts{Region: getenv("OS_REGION_NAME")}
	switch getenv("OS_INTERFACE") {
	case "internal", "internalURL":
		eo.Availability = gophercloud.AvailabilityInternal
	case "admin", "adminURL":
		eo.Availability = gophercloud.AvailabilityAdmin
	}
	return Config{Auth: ao, Endpoints: eo}, nil
}

// authOptionsFromEnv reads the OS_* variables of an openrc file.
// openstack.AuthOptionsFromEnv knows only OS_DOMAIN_{ID,NAME}, but
// python-openstackclient and the openrc files Horizon hands out name the
// user's and the project's domains apart: OS_USER_DOMAIN_{ID,NAME} and
// OS_PROJECT_DOMAIN_{ID,NAME}; and it has no token authentication. Those
// are read here, as openstackclient does; otherwise gophercloud's reading
// stands unchanged.
func authOptionsFromEnv() (gophercloud.AuthOptions, error) {
	env := os.Getenv
	userDomID, userDomName := env("OS_USER_DOMAIN_ID"), env("OS_USER_DOMAIN_NAME")
	projDomID, projDomName := env("OS_PROJECT_DOMAIN_ID"), env("OS_PROJECT_DOMAIN_NAME")
	token := strings.Contains(env("OS_AUTH_TYPE"), "token")
	if !token && (userDomID+userDomName+projDomID+projDomName == "" ||
		env("OS_APPLICATION_CREDENTIAL_ID")+env("OS_APPLICATION_CREDENTIAL_NAME") != "") {
		return openstack.AuthOptionsFromEnv()
	}
	ao := gophercloud.AuthOptions{
		IdentityEndpoint: env("OS_AUTH_URL"),
		UserID:           cmp.Or(env("OS_USER_ID"), env("OS_USERID")),
		Username:         env("OS_USERNAME"),
		Password:         env("OS_PASSWORD"),
		TenantID:         cmp.Or(env("OS_PROJECT_ID"), env("OS_TENANT_ID")),
		TenantName:       cmp.Or(env("OS_PROJECT_NAME"), env("OS_TENANT_NAME")),
	}
	if token {
		// A token stands for its user: no user, no password.
		ao.UserID, ao.Username, ao.Password, ao.TokenID = "", "", "", env("OS_TOKEN")
	}
	switch {
	case ao.IdentityEndpoint == "":
		return gophercloud.AuthOptions{}, gophercloud.ErrMissingEnvironmentVariable{EnvironmentVariable: "OS_AUTH_URL"}
	case token && ao.TokenID == "":
		return gophercloud.AuthOptions{}, gophercloud.ErrMissingEnvironmentVariable{EnvironmentVariable: "OS_TOKEN"}
	case !token && ao.UserID == "" && ao.Username == "":
		return gophercloud.AuthOptions{}, gophercloud.ErrMissingAnyoneOfEnvironmentVariables{EnvironmentVariables: []string{"OS_USER_ID", "OS_USERNAME"}}
	case !token && ao.Password == "":
		return gophercloud.AuthOptions{}, gophercloud.ErrMissingEnvironmentVariable{EnvironmentVariable: "OS_PASSWORD"}
	}
	if !token && ao.UserID == "" { // a user id needs no domain
		ao.DomainID, ao.DomainName = domain(userDomID, userDomName, env("OS_DOMAIN_ID"), env("OS_DOMAIN_NAME"))
		if ao.DomainID+ao.DomainName == "" {
			return gophercloud.AuthOptions{}, gophercloud.ErrMissingAnyoneOfEnvironmentVariables{EnvironmentVariables: []string{"OS_USER_DOMAIN_NAME", "OS_USER_DOMAIN_ID"}}
		}
	}
	switch {
	case env("OS_SYSTEM_SCOPE") == "all":
		ao.Scope = &gophercloud.AuthScope{System: true}
	case ao.TenantID != "":
		ao.Scope = &gophercloud.AuthScope{ProjectID: ao.TenantID}
	case ao.TenantName != "":
		id, name := domain(projDomID, projDomName, env("OS_DOMAIN_ID"), env("OS_DOMAIN_NAME"))
		if id+name == "" {
			return gophercloud.AuthOptions{}, gophercloud.ErrMissingAnyoneOfEnvironmentVariables{EnvironmentVariables: []string{"OS_PROJECT_DOMAIN_NAME", "OS_PROJECT_DOMAIN_ID"}}
		}
		ao.Scope = &gophercloud.AuthScope{ProjectName: ao.TenantName, DomainID: id, DomainName: name}
	}
	return ao, nil
}

// domain picks one of a domain's id and name (Keystone refuses both): the
// specific variables before the OS_DOMAIN_* fallbacks, the id before the name.
func domain(id, name, fallbackID, fallbackName string) (string, string) {
	switch {
	case id != "":
		return id, ""
	case name != "":
		return "", name
	case fallbackID != "":
		return fallbackID, ""
	}
	return "", fallbackName
}

// AuthTimeout bounds getting a token: an endpoint that accepts the
// connection and never answers (a firewall, a hung Keystone, a wrong port
// of another service) made register wait until it was killed. Later
// requests (and re-authentication) have their own contexts.
var AuthTimeout = time.Minute

// Authenticate gets a token from Keystone.
func (c Config) Authenticate(ctx context.Context) (*gophercloud.ProviderClient, error) {
	actx, cancel := context.WithTimeout(ctx, AuthTimeout)
	defer cancel()
	pc, err := config.NewProviderClient(actx, c.Auth, config.WithTLSConfig(c.TLS))
	if err == nil {
		return pc, nil
	}
	if ctx.Err() == nil && errors.Is(actx.Err(), context.DeadlineExceeded) {
		return nil, fmt.Errorf("no answer from Keystone at %s within %v; check %s, and that Keystone is up and reachable from here", c.Auth.IdentityEndpoint, AuthTimeout, c.setting("OS_AUTH_URL", "auth_url"))
	}
	return nil, c.explain(actx, err)
}

// explain turns a failed authentication into what to fix.
func (c Config) explain(ctx context.Context, err error) error {
	url := c.Auth.IdentityEndpoint
	var op *net.OpError
	switch {
	case errors.As(err, &op) || strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "no such host"):
		return fmt.Errorf("cannot reach Keystone at %s (%v); check %s", url, err, c.setting("OS_AUTH_URL", "auth_url"))
	case c.Auth.TokenID != "" && gophercloud.ResponseCodeIs(err, 404):
		return fmt.Errorf("the token (%s) is unknown to Keystone at %s: it expired or was revoked; get a new one (openstack token issue)", c.setting("OS_TOKEN", "token"), url)
	case gophercloud.ResponseCodeIs(err, 401):
	default:
		return fmt.Errorf("authenticate with Keystone at %s: %w", url, err)
	}
	who := cmp.Or(c.Auth.Username, c.Auth.UserID)
	project := c.project()
	if project != "" {
		// Keystone answers 401 whether the password or the project is
		// wrong; an unscoped login with the same credentials tells them apart.
		un := c.Auth
		un.Scope, un.TenantID, un.TenantName, un.AllowReauth = nil, "", "", false
		if pc, uerr := config.NewProviderClient(ctx, un, config.WithTLSConfig(c.TLS)); uerr == nil && pc.Token() != "" {
			if c.Auth.TokenID != "" {
				return fmt.Errorf("project %s refused by Keystone at %s, which accepts the token: the project does not exist or the token's user has no role on it; check %s", project, url, c.setting("OS_PROJECT_NAME (or OS_PROJECT_ID) and OS_PROJECT_DOMAIN_NAME", "project_name (or project_id) and project_domain_name"))
			}
			return fmt.Errorf("project %s refused by Keystone at %s, which accepts the password of user %s: the project does not exist in that domain or the user has no role on it; check %s", project, url, who, c.setting("OS_PROJECT_NAME (or OS_PROJECT_ID) and OS_PROJECT_DOMAIN_NAME", "project_name (or project_id) and project_domain_name"))
		}
	}
	switch {
	case c.Auth.TokenID != "":
		return fmt.Errorf("token refused by Keystone at %s; get a new one (openstack token issue) for %s", url, c.setting("OS_TOKEN", "token"))
	case c.Auth.ApplicationCredentialID+c.Auth.ApplicationCredentialName != "":
		return fmt.Errorf("application credential refused by Keystone at %s; check %s", url, c.setting("OS_APPLICATION_CREDENTIAL_ID and OS_APPLICATION_CREDENTIAL_SECRET", "application_credential_id and application_credential_secret"))
	}
	return fmt.Errorf("user %s refused by Keystone at %s: the password is wrong, or there is no such user in that domain; check %s", who, url, c.setting("OS_PASSWORD, OS_USERNAME and OS_USER_DOMAIN_NAME", "password, username and user_domain_name"))
}

// project names the project the configuration asks for.
func (c Config) project() string {
	if s := c.Auth.Scope; s != nil {
		return cmp.Or(s.ProjectName, s.ProjectID)
	}
	return cmp.Or(c.Auth.TenantName, c.Auth.TenantID)
}

// Service returns the client for one service of the catalog, made by
// newClient (openstack.NewImageV2, NewComputeV2, ...); when the catalog has
// none in the configured region, the error names the regions it has.
func (c Config) Service(pc *gophercloud.ProviderClient, kind string, newClient func(*gophercloud.ProviderClient, gophercloud.EndpointOpts) (*gophercloud.ServiceClient, error)) (*gophercloud.ServiceClient, error) {
	sc, err := newClient(pc, c.Endpoints)
	if err == nil {
		return sc, nil
	}
	var nf *gophercloud.ErrEndpointNotFound
	if !errors.As(err, &nf) && !strings.Contains(err.Error(), "No suitable endpoint") {
		return nil, fmt.Errorf("find the %s service in the Keystone catalog: %w", kind, err)
	}
	regions := c.regions(pc, kind)
	if len(regions) == 0 {
		return nil, fmt.Errorf("the Keystone catalog of this project has no %s service (%s interface)", kind, cmp.Or(string(c.Endpoints.Availability), "public"))
	}
	return nil, fmt.Errorf("the Keystone catalog has no %s service in region %q; it has one in %s: check %s", kind, c.Endpoints.Region,
		strings.Join(regions, ", "), c.setting("OS_REGION_NAME", "region_name"))
}

// regions lists the regions that have a kind endpoint in the token's catalog.
func (c Config) regions(pc *gophercloud.ProviderClient, kind string) []string {
	// CreateResult, or GetResult for a token passed through unscoped.
	res, ok := pc.GetAuthResult().(interface {
		ExtractServiceCatalog() (*tokens3.ServiceCatalog, error)
	})
	if !ok {
		return nil
	}
	cat, err := res.ExtractServiceCatalog()
	if err != nil {
		return nil
	}
	var regions []string
	for _, e := range cat.Entries {
		if e.Type != kind {
			continue
		}
		for _, ep := range e.Endpoints {
			if r := cmp.Or(ep.RegionID, ep.Region); r != "" && !slices.Contains(regions, r) {
				regions = append(regions, r)
			}
		}
	}
	sort.Strings(regions)
	return regions
}
