# bootfleet — the two commands a fresh machine needs are `make run` and
# `make test`; both install what they need (Debian packages as root, Go
# modules) first.

SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

# Debian packages the tests drive as real peers.
TEST_PACKAGES := curl ca-certificates atftp tftp-hpa isc-dhcp-client iproute2 ndisc6 dnsmasq-base podman runc netavark aardvark-dns iptables busybox-static qemu-system-x86 ipxe-qemu ovmf libvirt-clients libxml2-utils chromium chromium-headless-shell fonts-dejavu-core
# Debian packages `make run` needs: the lab's VMs and their firmware.
RUN_PACKAGES := curl ca-certificates iproute2 qemu-system-x86 ipxe-qemu ovmf

.PHONY: all build run test test-short lint fmt bench deps-test deps-run clean

all: build

bin/bootfleet: FORCE
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/bootfleet

# The node agent, for both architectures nodes may have; the server serves
# them from its own directory at /agent/bootfleet-agent-<arch>.
bin/bootfleet-agent-%: FORCE
	CGO_ENABLED=0 GOOS=linux GOARCH=$* $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/bootfleet-agent

build: bin/bootfleet bin/bootfleet-agent-amd64 bin/bootfleet-agent-arm64

deps-run:
	./scripts/install-deps.sh $(RUN_PACKAGES)
	$(GO) mod download

deps-test:
	./scripts/install-deps.sh $(TEST_PACKAGES)
	$(GO) mod download

# The demo: a lab of two QEMU VMs PXE-booting from bootfleet in a network
# namespace, each node's progress live; Ctrl-C tears it all down. (As root.
# To serve your own profiles instead: ./bin/bootfleet serve --profiles DIR.)
run: deps-run build
	./bin/bootfleet lab up --nodes 2

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

# The whole suite, as CI runs it (as root: namespaces, real clients).
test: deps-test lint
	$(GO) test -count=1 -timeout 20m ./...

test-short:
	$(GO) test -short ./...

bench: deps-test build
	./bench/run.sh

clean:
	rm -rf bin bench/out

FORCE:
