SHELL := /bin/bash
# cps: build, verify and publish ConPaaS images.
#
#   make image   install build dependencies, build conpaas.img from the embedded default template
#   make test    install test dependencies, run every test (boots a freshly built image in QEMU)
#   make e2e     heavier end-to-end tests (full images, ARM emulation)
#   make bench   benchmarks against the reference tools
#   make fuzz    every fuzz target for FUZZTIME each (default 3m; make test runs them for 5s)

# Go: the toolchain go.mod names. scripts/deps/go.sh (the `go` target)
# installs it into its own directory when the machine has none that recent;
# make and the tests (which run `go`) look there first, then in PATH, then
# where Go's own tarball goes.
export PATH := $(shell bash scripts/deps/go.sh --bindir):$(PATH):/usr/local/go/bin
export GOTOOLCHAIN ?= local
GO       ?= go
BIN      := bin
GOFLAGS  ?=
export CPS_CACHE ?= /var/cache/cps
# Tests fail (not skip) when a tool they need is missing: deps.sh installed them.
export CPS_REQUIRE_TOOLS := 1

.PHONY: all go build deps image nutshell test e2e bench fuzz fmt vet clean

all: build

go:
	@scripts/deps.sh go

deps: go
	@scripts/deps.sh

build: go
	@GO=$(GO) scripts/gobuild.sh $(BIN) ./cmd/...

# Reproducible by default: every timestamp in the image is the last commit's
# time, so two `make image` runs of the same tree give the same MD5.
image: build
	@scripts/deps.sh base raw
	SOURCE_DATE_EPOCH=$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct 2>/dev/null || date +%s)} $(BIN)/cpsimage build -force -o .

# ConPaaS in a Nutshell: the all-in-one OpenStack + director disk and its OVA.
nutshell: build
	@scripts/deps.sh base raw ova
	SOURCE_DATE_EPOCH=$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct 2>/dev/null || date +%s)} $(BIN)/cpsimage build -force -o . hcl/templates/examples/nutshell.pkr.hcl

test: deps build
	$(GO) vet ./...
	$$(scripts/deps/staticcheck.sh --path) ./...
	$(GO) test -timeout 45m -count=1 ./... 2>&1 | tee test.log; exit $${PIPESTATUS[0]}
	GO=$(GO) scripts/fuzz.sh 5s

# Every fuzz target for minutes; a failure leaves its input in the package's
# testdata/fuzz/ (docs/fuzzing.md).
FUZZTIME ?= 3m
fuzz: go
	GO=$(GO) scripts/fuzz.sh $(FUZZTIME)

e2e: deps build
	$(GO) test -tags e2e -timeout 300m -count=1 ./... 

bench: deps build
	@for s in scripts/bench/*.sh; do echo "== $$s"; bash $$s || exit 1; done

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN) test.log
