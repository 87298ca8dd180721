# ebpfnet. Run as root (or with sudo): the kernel tests and `run` load BPF.
#
# sudo resets PATH to its secure_path, which does not have Go: the Go found
# in PATH, else where it is usually installed, and its directory first in
# PATH for everything make runs (the tests run go too).
GO ?= $(or $(shell command -v go 2>/dev/null),$(firstword $(wildcard /usr/local/go/bin/go /usr/lib/go/bin/go)),go)
export PATH := $(dir $(GO)):$(PATH)
export EBPFNET_PRIVILEGED ?=

.PHONY: all generate build test test-kernel bench run otelcol check-generate fuzz clean image image-otelcol kubernetes-tools previous-release lint prerequisites peers

all: build

# Regenerate the bpf2go output (needs clang-19 and llvm-strip-19): the
# programs, and for make bench the previous design's. The result is
# committed, so building never needs clang.
generate:
	$(GO) generate ./bpf/... ./internal/bench/...

# CI: the committed bpf2go output must be exactly what generate makes.
check-generate: generate
	git diff --exit-code -- bpf/ internal/bench/

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/ebpfnet/ebpfnet/internal/version.Version=$(VERSION)

# grpcnotrace: gRPC without golang.org/x/net/trace (and html/template),
# which ebpfnet never uses: 3 MB less binary, 2 MB less resident memory.
BUILDTAGS := grpcnotrace
build:
	CGO_ENABLED=0 $(GO) build -tags $(BUILDTAGS) -ldflags "$(LDFLAGS)" -o bin/ebpfnet ./cmd/ebpfnet

# Build and start the sidecar with its embedded default: a per-interface
# table in the terminal every 10 s (OTEL_METRIC_EXPORT_INTERVAL or
# ARGS="--interval 2s" to change it). Ctrl-C detaches and exits.
run: build
	./bin/ebpfnet $(ARGS)

# Every test, with the race detector, kernel tests included (in network
# namespaces they create),
# on this kernel and then on Debian 12's 6.1 kernel in a VM. The custom
# Collector is built first, here, because the tests run in network
# namespaces of their own that cannot reach the Go module proxy.
# cmd/ebpfnet takes about 4 minutes under -race on 2 cores; -timeout leaves
# room for a machine three times slower than that, where go test's default
# of 10 minutes would not.
test: prerequisites otelcol kubernetes-tools previous-release lint backends
	$(GO) test -race -count=1 -timeout 30m ./...
	$(MAKE) --no-print-directory test-kernel

# What make test needs, on Debian or Ubuntu, installed where missing:
# clang-19 and llvm-19 (make generate, which CI checks); bpftool (the pinning
# tests read pinned maps with it, as the docs show users); util-linux
# (setpriv, unshare); qemu-system-x86 and busybox-static (make test-kernel
# boots Debian 12's 6.1 kernel, fetched with apt); gcc (the race detector,
# cgo); prometheus (promtool and a real Prometheus for the dashboard, the
# alerts and the gateway); systemd (systemd-analyze checks the unit); podman,
# buildah, runc (the images); containerd and containernetworking-plugins
# (real pods through CRI); git (the previous release, for the upgrade test).
TEST_PACKAGES := clang-19 llvm-19 bpftool util-linux qemu-system-x86 busybox-static gcc \
	prometheus systemd podman buildah runc containerd containernetworking-plugins git
prerequisites:
	@need=; for p in $(TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || need="$$need $$p"; done; \
	if [ -n "$$need" ]; then \
		echo "make test: installing$$need"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$need >/dev/null; \
	fi

# go vet and staticcheck, and the build elsewhere than on Linux, where
# ebpfnet says it runs on Linux only.
STATICCHECK_VERSION := v0.8.2
bin/staticcheck-$(STATICCHECK_VERSION):
	GOBIN=$(CURDIR)/bin/staticcheck.tmp $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv bin/staticcheck.tmp/staticcheck $@ && rmdir bin/staticcheck.tmp

lint: bin/staticcheck-$(STATICCHECK_VERSION)
	$(GO) vet ./...
	bin/staticcheck-$(STATICCHECK_VERSION) ./...
	GOOS=darwin $(GO) build ./...

# The kernel tests on Debian 12's 6.1 kernel (no tcx there: tc and xdp),
# booted with qemu from an initramfs (internal/vmtest). Needs
# qemu-system-x86 and busybox-static; fetches the kernel with apt.
test-kernel: previous-release
	bash internal/vmtest/run.sh

# The previous release's sidecar, for the upgrade test: this release takes
# its pinned state over across a layout change (bpf.PreviousLayout). Built
# from the commit recorded here, from git, as it was released.
PREVIOUS_RELEASE := b3fd25cd97b43ce3f9a1f8c6fd7bce92d185943c
bin/ebpfnet-$(PREVIOUS_RELEASE):
	rm -rf build/previous && mkdir -p build/previous bin
	git archive $(PREVIOUS_RELEASE) | tar -x -C build/previous
	cd build/previous && CGO_ENABLED=0 $(GO) build -tags grpcnotrace \
		-ldflags "-X github.com/ebpfnet/ebpfnet/internal/version.Version=$(PREVIOUS_RELEASE)" \
		-o $(CURDIR)/$@ ./cmd/ebpfnet
	rm -rf build/previous

previous-release: bin/ebpfnet-$(PREVIOUS_RELEASE)
	ln -sf ebpfnet-$(PREVIOUS_RELEASE) bin/ebpfnet-previous

# The custom Collector with the ebpfnet receiver, from builder-config.yaml.
BUILDER_VERSION := v0.165.0
bin/builder-$(BUILDER_VERSION):
	GOBIN=$(CURDIR)/bin $(GO) install go.opentelemetry.io/collector/cmd/builder@$(BUILDER_VERSION)
	mv bin/builder bin/builder-$(BUILDER_VERSION)

otelcol: bin/builder-$(BUILDER_VERSION)
	mkdir -p build
	CGO_ENABLED=0 bin/builder-$(BUILDER_VERSION) --config builder-config.yaml
	cp build/otelcol-ebpfnet/otelcol-ebpfnet bin/otelcol-ebpfnet

# What the Kubernetes manifests' test checks them with, offline:
# kubeconform, and Kubernetes' own OpenAPI definitions from the
# k8s.io/kubernetes module (api/openapi-spec/swagger.json), which the test
# turns into strict per-kind schemas. Both from the Go module proxy;
# bin/kubeconform and bin/kubernetes-openapi.json point at the versions here.
KUBECONFORM_VERSION := v0.8.0
KUBERNETES_VERSION := v1.37.2
bin/kubeconform-$(KUBECONFORM_VERSION):
	GOBIN=$(CURDIR)/bin/kubeconform.tmp $(GO) install github.com/yannh/kubeconform/cmd/kubeconform@$(KUBECONFORM_VERSION)
	mv bin/kubeconform.tmp/kubeconform $@ && rmdir bin/kubeconform.tmp

bin/kubernetes-openapi-$(KUBERNETES_VERSION).json:
	mkdir -p bin
	dir=$$(cd / && $(GO) mod download -json k8s.io/kubernetes@$(KUBERNETES_VERSION) | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p') && \
	test -n "$$dir" && cp "$$dir/api/openapi-spec/swagger.json" $@ && chmod 644 $@

kubernetes-tools: bin/kubeconform-$(KUBECONFORM_VERSION) bin/kubernetes-openapi-$(KUBERNETES_VERSION).json
	ln -sf kubeconform-$(KUBECONFORM_VERSION) bin/kubeconform
	ln -sf kubernetes-openapi-$(KUBERNETES_VERSION).json bin/kubernetes-openapi.json

# The sidecar's and the custom Collector's images, as the Dockerfile
# builds them but without a registry: buildah, from scratch, the static
# binary alone, running as nobody. (podman run ... IMAGE; see README.)
IMAGE ?= localhost/ebpfnet:$(VERSION)
IMAGE_OTELCOL ?= localhost/otelcol-ebpfnet:$(VERSION)
image: build
	c=$$(buildah from scratch) && \
	buildah copy $$c bin/ebpfnet /ebpfnet && \
	buildah config --entrypoint '["/ebpfnet"]' --user 65534:65534 $$c && \
	buildah commit --rm $$c $(IMAGE)

image-otelcol: otelcol
	c=$$(buildah from scratch) && \
	buildah copy $$c bin/otelcol-ebpfnet /otelcol-ebpfnet && \
	buildah copy $$c examples/otelcol/agent.yaml /etc/otelcol-ebpfnet/config.yaml && \
	buildah config --entrypoint '["/otelcol-ebpfnet"]' --cmd '--config=/etc/otelcol-ebpfnet/config.yaml' --user 65534:65534 $$c && \
	buildah commit --rm $$c $(IMAGE_OTELCOL)

fuzz:
	$(GO) test ./bpf -run '^$$' -fuzz FuzzParser -fuzztime 60s

bench: peers
	$(GO) run ./internal/bench -o BENCHMARKS.md

# What make bench measures ebpfnet beside, in one window on the same
# interfaces (internal/bench/peers.go): the custom Collector (built),
# Debian's node_exporter (installed if missing), and a Collector with
# contrib's hostmetrics receiver, built from
# internal/bench/hostmetrics/builder-config.yaml with the v0.160.0 builder
# (hostmetricsreceiver v0.165.0 needs scrapertest v0.165.0, which the Go
# module proxy refuses). Built here, as the bench runs in a network
# namespace of its own that cannot reach the proxy. When that Collector
# does not build, the build's output stays in its .log beside it, make
# bench goes on without it and its table says why.
HOSTMETRICS_VERSION := v0.160.0
HOSTMETRICS := bin/otelcol-hostmetrics-$(HOSTMETRICS_VERSION)
peers: otelcol
	@dpkg -s prometheus-node-exporter >/dev/null 2>&1 || { \
		echo "make peers: installing prometheus-node-exporter"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus-node-exporter >/dev/null; }
	@test -x $(HOSTMETRICS) || { \
		echo "make peers: building $(HOSTMETRICS) (a few minutes)"; mkdir -p bin && rm -f $(HOSTMETRICS).log && \
		{ test -x bin/builder-$(HOSTMETRICS_VERSION) || { \
			GOBIN=$(CURDIR)/bin/builder-peers.tmp $(GO) install go.opentelemetry.io/collector/cmd/builder@$(HOSTMETRICS_VERSION) && \
			mv bin/builder-peers.tmp/builder bin/builder-$(HOSTMETRICS_VERSION) && rmdir bin/builder-peers.tmp; }; } >>$(HOSTMETRICS).log 2>&1 && \
		CGO_ENABLED=0 bin/builder-$(HOSTMETRICS_VERSION) --config internal/bench/hostmetrics/builder-config.yaml >>$(HOSTMETRICS).log 2>&1 && \
		cp build/otelcol-hostmetrics-$(HOSTMETRICS_VERSION)/otelcol-hostmetrics $(HOSTMETRICS) && rm -f $(HOSTMETRICS).log || \
		echo "make peers: $(HOSTMETRICS) did not build ($(HOSTMETRICS).log); make bench says why"; }

clean:
	rm -rf bin build

# ---------------------------------------------------------------------------
# The backends the tests send to (cmd/ebpfnet/backends_test.go, and the
# attach-error alert in cmd/ebpfnet/grafana_test.go): Prometheus 3 with its
# native OTLP receiver, and VictoriaMetrics single-node. Built once from the
# Go module proxy and kept in bin/, as make test runs the tests in network
# namespaces that cannot reach the proxy; bin/prometheus3 and
# bin/victoria-metrics point at the versions here. Prometheus is built with
# remove_all_sd (static, file and HTTP targets only: no cloud or Kubernetes
# discovery, which the tests never use and which is most of the build) and
# without builtinassets (no web UI, the default); nice, as the build is long.
PROMETHEUS3_VERSION := v0.316.0
VICTORIAMETRICS_VERSION := v1.151.0
BACKEND_NICE ?= nice -n 19
bin/prometheus-$(PROMETHEUS3_VERSION):
	mkdir -p bin/prometheus.tmp
	GOBIN=$(CURDIR)/bin/prometheus.tmp CGO_ENABLED=0 $(BACKEND_NICE) $(GO) install -tags remove_all_sd \
		-ldflags "-X github.com/prometheus/common/version.Version=$(PROMETHEUS3_VERSION)" \
		github.com/prometheus/prometheus/cmd/prometheus@$(PROMETHEUS3_VERSION)
	mv bin/prometheus.tmp/prometheus $@ && rmdir bin/prometheus.tmp

bin/victoria-metrics-$(VICTORIAMETRICS_VERSION):
	mkdir -p bin/victoria-metrics.tmp
	GOBIN=$(CURDIR)/bin/victoria-metrics.tmp CGO_ENABLED=0 $(BACKEND_NICE) $(GO) install \
		-ldflags "-X github.com/VictoriaMetrics/VictoriaMetrics/lib/buildinfo.Version=victoria-metrics-$(VICTORIAMETRICS_VERSION)" \
		github.com/VictoriaMetrics/VictoriaMetrics/app/victoria-metrics@$(VICTORIAMETRICS_VERSION)
	mv bin/victoria-metrics.tmp/victoria-metrics $@ && rmdir bin/victoria-metrics.tmp

backends: bin/prometheus-$(PROMETHEUS3_VERSION) bin/victoria-metrics-$(VICTORIAMETRICS_VERSION)
	ln -sf prometheus-$(PROMETHEUS3_VERSION) bin/prometheus3
	ln -sf victoria-metrics-$(VICTORIAMETRICS_VERSION) bin/victoria-metrics

.PHONY: backends
