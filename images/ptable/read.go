package ptable

import (
	"fmt"
	"os"

	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/diskfs/go-diskfs/partition/mbr"

	"github.com/conpaas/cps/plan"
)

// Read reads the partition table of an existing image file and returns
// its kind (GPT or MBR) and partitions with Name (GPT only), FS (from the
// partition type; "" when unknown), Start and End in bytes. A GPT disk is
// recognised by its header first, since its protective MBR is also a valid
// MBR.
func Read(f *os.File) (string, []plan.Partition, error) {
	if t, err := gpt.Read(f, Sector, Sector); err == nil {
		var parts []plan.Partition
		for _, p := range t.Partitions {
			if p == nil || p.Type == gpt.Unused {
				continue
			}
			parts = append(parts, plan.Partition{
				Name:  p.Name,
				FS:    FSOf(GPT, string(p.Type)),
				UUID:  p.GUID,
				Start: int64(p.Start) * Sector,
				End:   (int64(p.End) + 1) * Sector,
			})
		}
		return GPT, parts, nil
	}
	t, err := mbr.Read(f, Sector, Sector)
	if err != nil {
		return "", nil, fmt.Errorf("%s has no readable partition table (neither GPT nor MBR): %w", f.Name(), err)
	}
	var parts []plan.Partition
	for _, p := range t.Partitions {
		if p == nil || p.Type == mbr.Empty {
			continue
		}
		parts = append(parts, plan.Partition{
			FS:    FSOf(MBR, fmt.Sprintf("%02X", byte(p.Type))),
			Start: int64(p.Start) * Sector,
			End:   (int64(p.Start) + int64(p.Size)) * Sector,
		})
	}
	return MBR, parts, nil
}
