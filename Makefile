# HTTVPS developer entry points. `make help` lists them.

export PATH := /usr/local/go/bin:$(PATH)

GO        ?= go
BIN       := bin
FUZZTIME  ?= 30s
FUZZ_PKGS ?= ./codec ./codec/mux ./codec/tls12 ./codec/tls13 ./client ./gateway
BENCH_OUT ?= bench/out
BENCH_ARGS ?=
# Where make bench-publish puts the last full run (tracked; the README's
# table and charts).
BENCH_PUBLISH ?= docs/bench

.PHONY: all help build test vet run bench bench-full bench-plan bench-publish fuzz deps clean

all: build

help:
	@echo "make build   build bin/httvps, bin/httvps-gateway, bin/httvps-control and bin/httvps-bench"
	@echo "make test    install missing deps, go vet, go test -race"
	@echo "make run     httvps up with a local ss-server as its pool member; prints a client key and the ss-local command (RUN_SELFTEST=1 checks it)"
	@echo "make bench       short run (about 7 min on 2 cores): every scenario and peer, small cells, into $(BENCH_OUT)/short/ (not tracked)"
	@echo "make bench-full  full run (about 1 h on 2 cores): 5 runs per figure, peers interleaved (medians, ranges), into $(BENCH_OUT)/full/; BENCH_ARGS=-runs 3 shortens it"
	@echo "make bench-plan  print both runs' plans with their estimated durations"
	@echo "make bench-publish  copy the last full run (report, charts) into $(BENCH_PUBLISH)/, the README's source"
	@echo "make fuzz    run every fuzz target in $(FUZZ_PKGS) for FUZZTIME=$(FUZZTIME)"
	@echo "make deps    install the Debian packages tests, bench and run use (only missing ones)"

# Commands that exist in this tree (httvps-control may not yet).
CMDS := $(wildcard cmd/httvps cmd/httvps-gateway cmd/httvps-control cmd/httvps-bench)

# What every binary prints (-version) and reports (httvps_build_info): git
# describe, the commit (from git, since GOFLAGS may turn off the
# VCS stamp) and the build time; "devel" outside a git checkout.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
DATE    ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
VPKG    := github.com/httvps/httvps/internal/version
LDFLAGS := -X $(VPKG).Version=$(VERSION) -X $(VPKG).Commit=$(COMMIT) -X $(VPKG).Date=$(DATE)

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./,$(CMDS))

vet:
	$(GO) vet ./...

test: deps vet
	$(GO) test -race -count=1 -timeout 12m ./...
	$(MAKE) build
	RUN_SELFTEST=1 scripts/run.sh

run: deps build
	scripts/run.sh

bench: deps build
	$(BIN)/httvps-bench -short -out $(BENCH_OUT)/short $(BENCH_ARGS)

bench-full: deps build
	$(BIN)/httvps-bench -out $(BENCH_OUT)/full $(BENCH_ARGS)

bench-plan: build
	$(BIN)/httvps-bench -short -plan $(BENCH_ARGS)
	$(BIN)/httvps-bench -plan $(BENCH_ARGS)

# The README's figures come from a full run only: refuse anything else.
bench-publish:
	@test -f $(BENCH_OUT)/full/latest.json || { echo "no full run in $(BENCH_OUT)/full: run make bench-full first"; exit 1; }
	@grep -q '"mode": "full"' $(BENCH_OUT)/full/latest.json || { echo "$(BENCH_OUT)/full/latest.json is not a full run"; exit 1; }
	mkdir -p $(BENCH_PUBLISH)
	cp $(BENCH_OUT)/full/latest.json $(BENCH_PUBLISH)/report.json
	cp $(BENCH_OUT)/full/latest.md $(BENCH_PUBLISH)/report.md
	cp $(BENCH_OUT)/full/*.png $(BENCH_OUT)/full/*.svg $(BENCH_PUBLISH)/
	@echo "published to $(BENCH_PUBLISH)/: git add $(BENCH_PUBLISH) and commit; the README links $(BENCH_PUBLISH)/report.md and its charts"

fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh $(FUZZ_PKGS)

deps:
	scripts/deps.sh

clean:
	rm -rf $(BIN)
