package template

import (
	"fmt"
	"path/filepath"
	"regexp"

	"github.com/hashicorp/hcl/v2"
)

// imageNameRE is what an image block's label may be. The name becomes
// file names (the default output NAME.img, its side files, the work
// directory) and the catalogue entry, so it is one plain path element.
var imageNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$`)

// checkImageName reports an image block whose label cannot name files.
func checkImageName(b *hcl.Block) *hcl.Diagnostic {
	name := b.Labels[0]
	if imageNameRE.MatchString(name) {
		return nil
	}
	detail := fmt.Sprintf("%q cannot name an image: it names its files, so it is 1 to 128 letters, digits, '.', '_', '+' and '-', starting with a letter or digit (no '/' or \"..\").", name)
	if name == "" {
		detail = "An image needs a name, e.g. image \"conpaas\" { ... }: it names its files."
	}
	return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid image name", Detail: detail, Subject: b.LabelRanges[0].Ptr()}
}

// checkOutput reports an output that would leave the output directory
// (the working directory, or build -o DIR): a template may only name a
// relative path inside it, so running someone else's template cannot
// write to /etc or ../../anything. Writing elsewhere is the user's choice,
// made on the command line.
func checkOutput(output string, at *hcl.Attribute) *hcl.Diagnostic {
	if filepath.IsLocal(output) && filepath.Base(filepath.Clean(output)) != "." {
		return nil
	}
	d := &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Output outside the output directory",
		Detail: fmt.Sprintf("output %q is not a file inside the output directory; write a relative file name without \"..\" (e.g. \"conpaas.img\"), and choose the directory on the command line: cpsimage build -o DIR.", output)}
	if at != nil {
		d.Subject = at.Expr.Range().Ptr()
	}
	return d
}
