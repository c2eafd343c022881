module github.com/conpaas/cps

go 1.26.8

require (
	github.com/cheggaaa/pb/v3 v3.3.0
	github.com/gophercloud/gophercloud/v2 v2.15.0
	golang.org/x/sys v0.50.0
	golang.org/x/term v0.48.0
)

require (
	github.com/VividCortex/ewma v1.2.0 // indirect
	github.com/clipperhouse/uax29/v2 v2.2.0 // indirect
	github.com/fatih/color v1.19.0 // indirect
	github.com/mattn/go-colorable v0.1.16 // indirect
	github.com/mattn/go-isatty v0.0.24 // indirect
	github.com/mattn/go-runewidth v0.0.31 // indirect
	gopkg.in/yaml.v2 v2.4.0 // indirect
)
