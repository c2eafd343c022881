package template

// The kinds cpsimage registers: the loader takes each kind's defaults from
// its spec (builders.Register) and runs its Prepare.
import (
	_ "github.com/conpaas/cps/builders/lxc"
	_ "github.com/conpaas/cps/builders/ova"
	_ "github.com/conpaas/cps/builders/raw"
	_ "github.com/conpaas/cps/builders/sdcard"
)
