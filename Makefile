# dcv-ec2-resolver: see README.md. Every target works on a fresh machine with only Go.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
BIN      := bin/dcv-ec2-resolver
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build test lint run fuzz clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/dcv-ec2-resolver

## test: vet, then every test with the race detector.
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

## lint: formatting, vet and staticcheck.
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

## run: serve the example sessions file on 127.0.0.1:9000.
run:
	$(GO) run ./cmd/dcv-ec2-resolver serve --config examples/resolver.toml

## fuzz: run every fuzz target for FUZZTIME each (seed corpora live in testdata/fuzz).
FUZZTIME ?= 20s
FUZZ_TARGETS := FuzzParseRequest:./httpapi FuzzAppendJSONString:./httpapi \
	FuzzApplyTags:./discovery FuzzParseSessionIDs:./discovery
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t%%:*} for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$${t%%:*}$$" -fuzztime $(FUZZTIME) $${t#*:}; \
	done

clean:
	rm -rf bin dist

.PHONY: package package-test

## package: .deb and .rpm packages for amd64 and arm64 in dist/, built with nfpm (go tool nfpm).
package:
	GO=$(GO) bash packaging/package.sh

## package-test: inspect and install the packages in dist/ (as root, with dpkg-deb, rpm,
## lintian, debootstrap and systemd-analyze; .ci/run installs them): see packaging/test.sh.
package-test:
	GO=$(GO) bash packaging/test.sh

.PHONY: bench

## bench: the Go benchmarks with -benchmem (BENCHTIME each), then the bench/ harness: the real
## daemon against a fake EC2 endpoint holding 1,000, 10,000 and 100,000 instances, beside a
## minimal net/http server, all on loopback (BENCH_FLAGS are passed on, e.g. -sizes 1000;
## go run ./bench -h lists them). About 3.5 minutes on 2 cores; the report also goes to
## bin/bench-results.md. See BENCHMARKS.md.
BENCHTIME ?= 500ms
BENCH_FLAGS ?=
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./resolve/ ./httpapi/ ./discovery/ec2/
	mkdir -p bin
	$(GO) run ./bench -out bin/bench-results.md $(BENCH_FLAGS)
