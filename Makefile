SHELL := /bin/bash
# cps: build, verify and publish ConPaaS images.
#
#   make image   install build dependencies, build conpaas.img from the embedded default template
#   make test    install test dependencies, run every test (boots a freshly built image in QEMU)
#   make e2e     heavier end-to-end tests (full images, ARM emulation)
#   make bench   benchmarks against the reference tools

# Go from PATH, else where the Go tarball installs it.
GO       ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
BIN      := bin
GOFLAGS  ?=
export CPS_CACHE ?= /var/cache/cps
# Tests fail (not skip) when a tool they need is missing: deps.sh installed them.
export CPS_REQUIRE_TOOLS := 1

.PHONY: all build deps image nutshell test e2e bench fmt vet clean

all: build

deps:
	@scripts/deps.sh

build:
	$(GO) build -o $(BIN)/ ./cmd/...

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
	$(GO) test -timeout 45m -count=1 ./... 2>&1 | tee test.log; exit $${PIPESTATUS[0]}

e2e: deps build
	$(GO) test -tags e2e -timeout 300m -count=1 ./... 

bench: deps build
	@for s in scripts/bench/*.sh; do echo "== $$s"; bash $$s || exit 1; done

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN) test.log
