# klab — see README.md. Every target that changes the machine needs root.

GO      ?= go
BIN     := bin/klab
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/klab-dev/klab/internal/version.Version=$(VERSION)
export CGO_ENABLED := 0
export PATH := /usr/local/go/bin:$(PATH)

.PHONY: all build up down test lint bench deps deps-test clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/klab

## up: install what is missing, build, and start the default cluster
up: deps build
	$(BIN) up

down:
	$(BIN) down

## test: every test, including those that need root, namespaces and VMs
test: deps-test build lint
	KLAB_TEST_BINARY=$(abspath $(BIN)) $(GO) test -count=1 -timeout 30m ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

bench: build
	$(BIN) bench up
	KLAB_TEST_BINARY=$(abspath $(BIN)) $(GO) test -run '^$$' -bench . -benchtime 3x ./...

deps:
	scripts/deps.sh

deps-test:
	scripts/deps.sh test
	.ci/libvirt-deps
	.ci/start-libvirt

clean:
	rm -rf bin
