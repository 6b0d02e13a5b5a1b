# HTTVPS developer entry points. `make help` lists them.

export PATH := /usr/local/go/bin:$(PATH)

GO        ?= go
BIN       := bin
FUZZTIME  ?= 30s
FUZZ_PKGS ?= ./codec ./codec/mux ./codec/tls12 ./codec/tls13 ./client ./gateway
BENCH_OUT ?= bench/results
BENCH_ARGS ?=

.PHONY: all help build test vet run bench bench-full fuzz deps clean

all: build

help:
	@echo "make build   build bin/httvps, bin/httvps-gateway, bin/httvps-control and bin/httvps-bench"
	@echo "make test    install missing deps, go vet, go test -race"
	@echo "make run     httvps up with a local ss-server as its pool member; prints a client key and the ss-local command (RUN_SELFTEST=1 checks it)"
	@echo "make bench       short run (about 6 min on 2 cores): every scenario and peer, small cells, into $(BENCH_OUT)/"
	@echo "make bench-full  full run: 1 GiB cells, 5 runs per figure (medians, ranges); BENCH_ARGS=-runs 3 shortens it"
	@echo "make fuzz    run every fuzz target in $(FUZZ_PKGS) for FUZZTIME=$(FUZZTIME)"
	@echo "make deps    install the Debian packages tests, bench and run use (only missing ones)"

# Commands that exist in this tree (httvps-control may not yet).
CMDS := $(wildcard cmd/httvps cmd/httvps-gateway cmd/httvps-control cmd/httvps-bench)

build:
	$(GO) build -o $(BIN)/ $(addprefix ./,$(CMDS))

vet:
	$(GO) vet ./...

test: deps vet
	$(GO) test -race -count=1 -timeout 12m ./...
	$(MAKE) build
	RUN_SELFTEST=1 scripts/run.sh

run: build
	scripts/run.sh

bench: deps build
	$(BIN)/httvps-bench -short -out $(BENCH_OUT) $(BENCH_ARGS)

bench-full: deps build
	$(BIN)/httvps-bench -out $(BENCH_OUT) $(BENCH_ARGS)

fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh $(FUZZ_PKGS)

deps:
	scripts/deps.sh

clean:
	rm -rf $(BIN)
