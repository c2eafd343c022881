// Package templates holds the templates shipped with cps: the default
// conpaas.img template embedded in cpsimage, and the examples beside it.
// It is a package of its own so the template loader (hcl/template) can
// embed files that also live at a path users know (hcl/templates/).
package templates

import _ "embed"

// Default is the embedded default template: conpaas.img for x86_64.
//
//go:embed conpaas.pkr.hcl
var Default []byte
