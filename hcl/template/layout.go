package template

import (
	"errors"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/conpaas/cps/builders/disk"
)

// layoutDiagnostics reports err, from disk.CheckLayout (or a kind's
// Prepare that calls it) for the image block b, as diagnostics: each
// problem of a *disk.LayoutError at the attribute it is about (the image's
// size, alignment or partition_table, or a partition block's size), or at
// the block that lacks it; another error at the image block.
func layoutDiagnostics(b *hcl.Block, err error) hcl.Diagnostics {
	if err == nil {
		return nil
	}
	var le *disk.LayoutError
	if !errors.As(err, &le) {
		return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid disk layout", Detail: sentence(err.Error()), Subject: b.DefRange.Ptr()}}
	}
	// The image block decoded without errors before, so its content is
	// there to be read again for positions.
	c, _ := b.Body.Content(imageSchema)
	parts := c.Blocks.OfType("partition")
	var diags hcl.Diagnostics
	for _, p := range le.Problems {
		subject := b.DefRange.Ptr()
		attrs := c.Attributes
		if p.Partition >= 0 && p.Partition < len(parts) {
			subject = parts[p.Partition].DefRange.Ptr()
			pc, _ := parts[p.Partition].Body.Content(partitionSchema)
			attrs = pc.Attributes
		} else if p.Partition >= 0 {
			attrs = nil // a partition the kind added: the block is the place
		}
		if at := attrs[p.Attr]; at != nil {
			subject = at.Expr.Range().Ptr()
		}
		summary := "Invalid " + strings.ReplaceAll(p.Attr, "_", " ")
		if p.Attr == "" {
			summary = "Invalid disk layout"
		}
		if strings.Contains(p.Msg, "not fit") {
			summary = "Partitions do not fit"
		}
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: sentence(p.Msg), Subject: subject})
	}
	return diags
}

// sentence capitalises msg and ends it with a period, as diagnostics read.
func sentence(msg string) string {
	if msg == "" {
		return msg
	}
	msg = strings.TrimSuffix(msg, ".")
	return strings.ToUpper(msg[:1]) + msg[1:] + "."
}
