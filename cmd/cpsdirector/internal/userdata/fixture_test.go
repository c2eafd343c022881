package userdata

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/conpaas/cps/test/userdatafixture"
)

var update = flag.Bool("update", false, "rewrite the user data fixture of test/userdatafixture")

// TestManagerFixture: the user data the director renders for a manager on
// EC2 and on OpenStack is byte for byte the shared fixture that the images'
// boot tests feed their contextualization.
func TestManagerFixture(t *testing.T) {
	for _, cloud := range userdatafixture.Clouds {
		t.Run(cloud, func(t *testing.T) {
			m := Manager{CloudType: cloud, DirectorURL: userdatafixture.DirectorURL, DeploymentName: userdatafixture.DeploymentName,
				UserID: userdatafixture.UserID, AppID: userdatafixture.AppID,
				Cert: userdatafixture.File("manager_cert.pem"), Key: userdatafixture.File("manager_key.pem"), CA: userdatafixture.File("ca_cert.pem")}
			got, err := m.Render(nil)
			if err != nil {
				t.Fatal(err)
			}
			if *update {
				_, here, _, _ := runtime.Caller(0)
				p := filepath.Join(filepath.Dir(here), "../../../../test/userdatafixture/testdata/manager-"+cloud+".sh")
				if err := os.WriteFile(p, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if want := userdatafixture.ManagerUserData(cloud); !bytes.Equal(got, want) {
				t.Errorf("the director's user data for %s is not the fixture's (the images' boot tests run the fixture): "+
					"update both sides together (go test -run TestManagerFixture -update)\ngot:\n%s\nwant:\n%s", cloud, got, want)
			}
		})
	}
}
