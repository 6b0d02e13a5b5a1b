# HTTVPS developer entry points. `make help` lists them.

export PATH := /usr/local/go/bin:$(PATH)

GO        ?= go
BIN       := bin
FUZZTIME  ?= 30s
FUZZ_PKGS ?= ./codec
BENCH_OUT ?= bench/results
BENCH_ARGS ?=

.PHONY: all help build test vet run bench fuzz deps clean

all: build

help:
	@echo "make build   build bin/httvps-gateway and bin/httvps-bench"
	@echo "make test    install missing deps, go vet, go test -race"
	@echo "make run     local ss-server behind the gateway; prints the ss-local command (RUN_SELFTEST=1 checks it)"
	@echo "make bench   run the bench harness with its default scenarios into $(BENCH_OUT)/"
	@echo "make fuzz    run every fuzz target in $(FUZZ_PKGS) for FUZZTIME=$(FUZZTIME)"
	@echo "make deps    install the Debian packages tests, bench and run use (only missing ones)"

build:
	$(GO) build -o $(BIN)/ ./cmd/httvps-gateway ./cmd/httvps-bench

vet:
	$(GO) vet ./...

test: deps vet
	$(GO) test -race -count=1 -timeout 12m ./...
	$(MAKE) build
	RUN_SELFTEST=1 scripts/run.sh

run: build
	scripts/run.sh

bench: build
	$(BIN)/httvps-bench -out $(BENCH_OUT) $(BENCH_ARGS)

fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh $(FUZZ_PKGS)

deps:
	scripts/deps.sh

clean:
	rm -rf $(BIN)
