# HTTVPS developer entry points. `make help` lists them.

export PATH := /usr/local/go/bin:$(PATH)

GO        ?= go
BIN       := bin
FUZZTIME  ?= 30s
FUZZ_PKGS ?= ./codec ./codec/mux ./codec/proxyproto ./codec/tls12 ./codec/tls13 ./client ./gateway
BENCH_OUT ?= bench/out
BENCH_ARGS ?=
# Where make bench-publish puts the last full run (tracked; the README's
# table and charts).
BENCH_PUBLISH ?= docs/bench

.PHONY: all help build test vet run bench bench-full bench-plan bench-publish fuzz deps clean \
	image-bins gateway-image control-image httvps-image images release k8s-render k8s-apply k8s-delete

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
	@echo "make gateway-image / control-image / httvps-image / images  build $(REGISTRY)/{httvps-gateway,httvps-control,httvps}:$(TAG) (httvps: one node, httvps up) from static binaries with $(CONTAINER) for PLATFORMS=$(PLATFORMS); PUSH=1 pushes"
	@echo "make release  static binaries for $(RELEASE_PLATFORMS) and SHA256SUMS in $(DIST)/"
	@echo "make k8s-apply / k8s-delete  kubectl apply/delete deploy/k8s in namespace $(K8S_NAMESPACE) with the images $(REGISTRY)/…:$(TAG)"

# Commands that exist in this tree (httvps-control may not yet).
CMDS := $(wildcard cmd/httvps cmd/httvps-gateway cmd/httvps-control cmd/httvps-bench)

# What every binary prints (-version) and reports (httvps_build_info): git
# describe, the commit (from git, since GOFLAGS may turn off the
# VCS stamp) and the build time; "devel" outside a git checkout.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
DATE    ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
# Evaluated once, so the binaries and the image labels agree.
DATE    := $(DATE)
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

# Container images, built from static binaries (CGO_ENABLED=0, the same
# version ldflags as build) with deploy/docker/prebuilt/*.Dockerfile, whose
# runtime stage is FROM scratch: nothing is pulled. CI/CD uses these targets
# with CONTAINER=docker (buildx, multi-arch, PUSH=1); here podman builds
# them. deploy/docker/*.Dockerfile build the same images from source on a
# Docker host with registry access (deploy/docker/README.md).
REGISTRY   ?= ghcr.io/httvps
TAG        ?= $(VERSION)
EXTRA_TAGS ?=
GOHOSTARCH := $(shell $(GO) env GOARCH 2>/dev/null || echo amd64)
PLATFORMS  ?= linux/$(GOHOSTARCH)
CONTAINER  ?= $(if $(shell command -v podman 2>/dev/null),podman,docker)
PUSH       ?=
# The CA bundle copied into the images (ACME, rediss://, outline-api).
CA_BUNDLE  ?= /etc/ssl/certs/ca-certificates.crt
IMAGE_CTX  := $(BIN)/image
IMAGE_CMDS := httvps-gateway httvps-control httvps
# The images deploy/k8s runs (a fleet: no single-node httvps), which the
# k8s overlay sets.
K8S_IMAGES := httvps-gateway httvps-control

comma := ,
platform_dir = $(subst /,_,$(1))
image_tags = $(foreach t,$(TAG) $(EXTRA_TAGS),-t $(REGISTRY)/$(1):$(t))
image_args = --build-arg VERSION=$(VERSION) --build-arg REVISION=$(COMMIT) --build-arg CREATED=$(DATE)

# $(call image,NAME): build (and with PUSH=1 push) one image.
ifeq ($(notdir $(CONTAINER)),docker)
image = $(CONTAINER) buildx build --platform $(PLATFORMS) $(if $(PUSH),--push,--load) \
	$(image_args) $(call image_tags,$(1)) -f deploy/docker/prebuilt/$(patsubst httvps-%,%,$(1)).Dockerfile $(IMAGE_CTX)
else
image = $(CONTAINER) build --platform $(PLATFORMS) $(image_args) $(call image_tags,$(1)) \
	-f deploy/docker/prebuilt/$(patsubst httvps-%,%,$(1)).Dockerfile $(IMAGE_CTX) \
	$(if $(PUSH),$(foreach t,$(TAG) $(EXTRA_TAGS),&& $(CONTAINER) push $(REGISTRY)/$(1):$(t)))
endif

# The images' context: one static binary per platform and a tiny root
# filesystem (nonroot user 65532, CA bundle, /tmp, the empty data
# directory of the control plane and of httvps up).
image-bins:
	@test -r $(CA_BUNDLE) || { echo "no CA bundle at $(CA_BUNDLE) (install ca-certificates or set CA_BUNDLE)"; exit 1; }
	rm -rf $(IMAGE_CTX)
	mkdir -p $(IMAGE_CTX)/rootfs/etc/ssl/certs $(IMAGE_CTX)/rootfs/tmp $(IMAGE_CTX)/data
	chmod 1777 $(IMAGE_CTX)/rootfs/tmp
	printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > $(IMAGE_CTX)/rootfs/etc/passwd
	printf 'root:x:0:\nnonroot:x:65532:\n' > $(IMAGE_CTX)/rootfs/etc/group
	cp $(CA_BUNDLE) $(IMAGE_CTX)/rootfs/etc/ssl/certs/ca-certificates.crt
	$(foreach p,$(subst $(comma), ,$(PLATFORMS)),CGO_ENABLED=0 GOOS=$(word 1,$(subst /, ,$(p))) GOARCH=$(word 2,$(subst /, ,$(p))) \
		$(GO) build -trimpath -ldflags '-s -w $(LDFLAGS)' -o $(IMAGE_CTX)/$(call platform_dir,$(p))/ $(addprefix ./cmd/,$(IMAGE_CMDS)) &&) true

gateway-image: image-bins
	$(call image,httvps-gateway)

control-image: image-bins
	$(call image,httvps-control)

httvps-image: image-bins
	$(call image,httvps)

images: image-bins
	$(call image,httvps-gateway)
	$(call image,httvps-control)
	$(call image,httvps)

# Release artefacts: static binaries per platform and their SHA-256 sums.
DIST              ?= dist
RELEASE_PLATFORMS ?= linux/amd64 linux/arm64
RELEASE_CMDS      := httvps httvps-gateway httvps-control

release:
	rm -rf $(DIST)
	mkdir -p $(DIST)
	$(foreach p,$(RELEASE_PLATFORMS),$(foreach c,$(RELEASE_CMDS),CGO_ENABLED=0 GOOS=$(word 1,$(subst /, ,$(p))) GOARCH=$(word 2,$(subst /, ,$(p))) \
		$(GO) build -trimpath -ldflags '-s -w $(LDFLAGS)' -o $(DIST)/$(c)_$(VERSION)_$(call platform_dir,$(p)) ./cmd/$(c) &&)) true
	cd $(DIST) && sha256sum * > SHA256SUMS
	cat $(DIST)/SHA256SUMS

# Kubernetes: deploy/k8s through a generated overlay that sets the images
# to $(REGISTRY)/…:$(TAG) (what make images PUSH=1 pushed). Create the
# secrets first (README, Kubernetes). k8s-delete removes the namespace,
# its secrets and Redis's volume claims with it.
KUBECTL       ?= kubectl
K8S_NAMESPACE := httvps
K8S_OVERLAY   := bin/k8s

k8s-render:
	mkdir -p $(K8S_OVERLAY)
	printf '%s\n' 'apiVersion: kustomize.config.k8s.io/v1beta1' 'kind: Kustomization' \
		'namespace: $(K8S_NAMESPACE)' 'resources:' '  - ../../deploy/k8s' 'images:' \
		$(foreach c,$(K8S_IMAGES),'  - name: ghcr.io/httvps/$(c)' '    newName: $(REGISTRY)/$(c)' '    newTag: "$(TAG)"') \
		> $(K8S_OVERLAY)/kustomization.yaml

k8s-apply: k8s-render
	$(KUBECTL) apply --namespace $(K8S_NAMESPACE) -k $(K8S_OVERLAY)

k8s-delete: k8s-render
	$(KUBECTL) delete --namespace $(K8S_NAMESPACE) --ignore-not-found -k $(K8S_OVERLAY)

fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh $(FUZZ_PKGS)

deps:
	scripts/deps.sh

clean:
	rm -rf $(BIN) $(DIST)
