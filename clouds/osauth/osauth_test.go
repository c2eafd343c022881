package osauth

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2"
)

// TestAuthOptionsFromEnv covers the openrc variables gophercloud's
// AuthOptionsFromEnv does not read (OS_USER_DOMAIN_*, OS_PROJECT_DOMAIN_*).
func TestAuthOptionsFromEnv(t *testing.T) {
	base := map[string]string{"OS_AUTH_URL": "http://keystone:5000/v3", "OS_USERNAME": "cps", "OS_PASSWORD": "pw"}
	cases := []struct {
		name    string
		env     map[string]string
		want    gophercloud.AuthOptions
		wantErr string
	}{
		{"horizon-openrc-names", map[string]string{"OS_PROJECT_NAME": "conpaas", "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default"},
			gophercloud.AuthOptions{DomainName: "Default", TenantName: "conpaas", Scope: &gophercloud.AuthScope{ProjectName: "conpaas", DomainName: "Default"}}, ""},
		{"horizon-openrc-project-id", map[string]string{"OS_PROJECT_ID": "p1", "OS_PROJECT_NAME": "conpaas", "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_ID": "default"},
			gophercloud.AuthOptions{DomainName: "Default", TenantID: "p1", TenantName: "conpaas", Scope: &gophercloud.AuthScope{ProjectID: "p1"}}, ""},
		{"ids-win-specific-first", map[string]string{"OS_PROJECT_NAME": "conpaas", "OS_USER_DOMAIN_ID": "u", "OS_USER_DOMAIN_NAME": "U",
			"OS_PROJECT_DOMAIN_NAME": "P", "OS_DOMAIN_ID": "d"},
			gophercloud.AuthOptions{DomainID: "u", TenantName: "conpaas", Scope: &gophercloud.AuthScope{ProjectName: "conpaas", DomainName: "P"}}, ""},
		{"project-domain-from-os-domain", map[string]string{"OS_PROJECT_NAME": "conpaas", "OS_USER_DOMAIN_NAME": "Default", "OS_DOMAIN_NAME": "D"},
			gophercloud.AuthOptions{DomainName: "Default", TenantName: "conpaas", Scope: &gophercloud.AuthScope{ProjectName: "conpaas", DomainName: "D"}}, ""},
		{"user-id-needs-no-domain", map[string]string{"OS_USERNAME": "", "OS_USER_ID": "u1", "OS_PROJECT_ID": "p1", "OS_PROJECT_DOMAIN_ID": "default"},
			gophercloud.AuthOptions{UserID: "u1", TenantID: "p1", Scope: &gophercloud.AuthScope{ProjectID: "p1"}}, ""},
		{"gophercloud-style-unchanged", map[string]string{"OS_PROJECT_NAME": "conpaas", "OS_DOMAIN_NAME": "Default"},
			gophercloud.AuthOptions{DomainName: "Default", TenantName: "conpaas"}, ""},
		{"no-project-domain", map[string]string{"OS_PROJECT_NAME": "conpaas", "OS_USER_DOMAIN_NAME": "Default"}, gophercloud.AuthOptions{}, "OS_PROJECT_DOMAIN_NAME"},
		{"no-user-domain", map[string]string{"OS_PROJECT_ID": "p1", "OS_PROJECT_DOMAIN_ID": "default"}, gophercloud.AuthOptions{}, "OS_USER_DOMAIN_NAME"},
		{"no-password", map[string]string{"OS_PASSWORD": "", "OS_USER_DOMAIN_NAME": "Default"}, gophercloud.AuthOptions{}, "OS_PASSWORD"},
		{"token", map[string]string{"OS_AUTH_TYPE": "v3token", "OS_TOKEN": "gAAAA", "OS_USERNAME": "", "OS_PROJECT_NAME": "conpaas", "OS_PROJECT_DOMAIN_NAME": "Default"},
			gophercloud.AuthOptions{TokenID: "gAAAA", TenantName: "conpaas", Scope: &gophercloud.AuthScope{ProjectName: "conpaas", DomainName: "Default"}}, ""},
		{"token-missing", map[string]string{"OS_AUTH_TYPE": "token", "OS_PROJECT_ID": "p1"}, gophercloud.AuthOptions{}, "OS_TOKEN"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clearEnv(t)
			for _, env := range []map[string]string{base, c.env} {
				for k, v := range env {
					t.Setenv(k, v)
				}
			}
			got, err := authOptionsFromEnv()
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want one naming %s", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := c.want
			want.IdentityEndpoint = base["OS_AUTH_URL"]
			if want.TokenID == "" {
				want.Username, want.Password = base["OS_USERNAME"], base["OS_PASSWORD"]
				if u, ok := c.env["OS_USERNAME"]; ok {
					want.Username = u
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("auth options\n got %+v scope %+v\nwant %+v scope %+v", got, got.Scope, want, want.Scope)
			}
		})
	}
}

// clearEnv unsets every OS_* variable (restored when the test ends), so the
// developer's own cloud credentials cannot leak into a test.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "OS_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
}
