package template

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/conpaas/cps/internal/testutil"
)

// TestExampleTemplates loads every example template as `cpsimage validate`
// does, in a copy of the repository layout they refer to (scripts/, and
// bin/cpsdirector, which `make build` makes), and checks the shell scripts
// they run parse (sh -n).
func TestExampleTemplates(t *testing.T) {
	tmpls := testutil.ExampleTemplates(t, "../..", 3)
	// The copy's root: its templates are in hcl/templates/examples.
	root := filepath.Join(filepath.Dir(tmpls[0]), "../../..")
	for _, p := range tmpls {
		t.Run(filepath.Base(p), func(t *testing.T) {
			pl, err := Load(p, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if len(pl.Images) == 0 {
				t.Fatal("no images")
			}
			// The Nutshell carries the LXC services image, built first.
			if d := pl.Image("nutshell-disk"); d != nil && (len(d.Provisioners) != 7 || d.Env["NUTSHELL_IP"] != "192.168.56.10" ||
				d.Provisioners[0].Image != "conpaas-lxc" || pl.Image("conpaas-lxc") == nil || pl.Image("conpaas-lxc").Kind != "lxc" ||
				!strings.HasSuffix(d.Provisioners[6].Script, "scripts/nutshell/openstack-aio.sh") || !d.NoContextualize || d.Hostname != "conpaas-nutshell") {
				t.Errorf("nutshell disk: provisioners %+v env %v", d.Provisioners, d.Env)
			}
		})
	}
	// Python helpers must at least compile (python3 is in the deps).
	pys, _ := filepath.Glob(filepath.Join(root, "scripts/*/*.py"))
	if _, err := exec.LookPath("python3"); err != nil {
		pys = nil
	}
	for _, s := range pys {
		if out, err := exec.Command("python3", "-c", "import ast,sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])", s).CombinedOutput(); err != nil {
			t.Errorf("python3 parse %s: %v\n%s", strings.TrimPrefix(s, root), err, out)
		}
	}
	scripts, _ := filepath.Glob(filepath.Join(root, "scripts/*/*.sh"))
	for _, s := range scripts {
		if out, err := exec.Command("sh", "-n", s).CombinedOutput(); err != nil {
			t.Errorf("sh -n %s: %v\n%s", strings.TrimPrefix(s, root), err, out)
		}
	}
}
