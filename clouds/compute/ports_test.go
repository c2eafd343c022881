package compute

import (
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The Nutshell's first boot opens the ConPaaS ports itself (one
// openstacksdk process, scripts/nutshell/nutshell-openstack.py); its list
// must stay the director's, or `cpsdirector check` reports the Nutshell's
// security group as incomplete.
func TestNutshellPortsMatch(t *testing.T) {
	b, err := os.ReadFile("../../scripts/nutshell/nutshell-openstack.py")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)CONPAAS_PORTS = \[([^\]]*)\]`).FindSubmatch(b)
	if m == nil {
		t.Fatal("CONPAAS_PORTS not found in nutshell-openstack.py")
	}
	var got []int
	for _, f := range strings.FieldsFunc(string(m[1]), func(r rune) bool { return r == ',' || r == ' ' || r == '\n' }) {
		p, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("CONPAAS_PORTS: %q: %v", f, err)
		}
		got = append(got, p)
	}
	want := slices.Clone(Ports)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("nutshell-openstack.py opens %v, the director needs %v", got, want)
	}
}
