package progress

import (
	"bytes"
	"strings"
	"testing"
)

// A library reports through the UI it is given: nil or Quiet says nothing,
// otherwise lines and (off a terminal) a bar's final line go to Out.
func TestUI(t *testing.T) {
	var quietOut, out bytes.Buffer
	for _, c := range []struct {
		name string
		ui   *UI
		buf  *bytes.Buffer
		want []string
	}{
		{"nil", nil, nil, nil},
		{"quiet", &UI{Out: &quietOut, Quiet: true}, &quietOut, nil},
		{"stderr-like", &UI{Out: &out}, &out, []string{"raw: step 1", "hash: 1.0 KiB / 1.0 KiB (100%)", "rootfs: 3/4 packages (75%)"}},
	} {
		c.ui.Logf("raw: step %d", 1)
		b := c.ui.New("hash", 1024)
		b.Write(make([]byte, 1024))
		b.Finish()
		n := c.ui.NewCount("rootfs", "packages", 4)
		n.Add64(3)
		n.Finish()
		got := ""
		if c.buf != nil {
			got = c.buf.String()
		}
		if len(c.want) == 0 && got != "" {
			t.Errorf("%s: printed %q", c.name, got)
		}
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: output %q lacks %q", c.name, got, w)
			}
		}
	}
}
