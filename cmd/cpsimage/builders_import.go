package main

// The builders cpsimage knows; each registers its image kind in init().
import (
	_ "github.com/conpaas/cps/builders/lxc"
	_ "github.com/conpaas/cps/builders/ova"
	_ "github.com/conpaas/cps/builders/raw"
	_ "github.com/conpaas/cps/builders/sdcard"
)
