# Tripwire — the front door. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/tripwire-project/tripwire/internal/version.Version=$(VERSION)
BIN := bin

# Pinned code generators (no container engine here: versions are pinned instead).
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.0
GOBIN_DIR := $(shell $(GO) env GOPATH)/bin
# Every Go package of the project; npm packages under grafana-plugin/node_modules may
# carry Go code of their own, which is not ours to test.
GO_PACKAGES = $(shell $(GO) list ./... | grep -v /node_modules/)

.PHONY: help
help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

##@ Build
.PHONY: build
build: ## Build bin/tripwire (static), bin/tripwire-collector, bin/tripwire-forensics
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/tripwire ./agent/cmd/tripwire
	CGO_ENABLED=1 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/tripwire-collector ./collector/cmd/tripwire-collector
	CGO_ENABLED=1 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/tripwire-forensics ./forensics/cmd/tripwire-forensics

.PHONY: build-all
build-all: ## Cross-build the agent: linux (static) amd64/arm64, darwin amd64/arm64, windows amd64
	@mkdir -p $(BIN)
	@for target in linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64; do \
		os=$${target%/*}; arch=$${target#*/}; ext=; [ $$os = windows ] && ext=.exe; \
		echo "  tripwire $$os/$$arch"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' \
			-o $(BIN)/tripwire-$$os-$$arch$$ext ./agent/cmd/tripwire || exit 1; \
	done

PLUGIN_TARGETS := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64

.PHONY: plugin
plugin: ## Build the Grafana data source into grafana-plugin/dist (frontend + gpx_tripwire_* backends)
	cd grafana-plugin && npm ci --no-audit --no-fund && npm run build
	@for target in $(PLUGIN_TARGETS); do \
		os=$${target%/*}; arch=$${target#*/}; echo "  gpx_tripwire_$${os}_$${arch}"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' \
			-o grafana-plugin/dist/gpx_tripwire_$${os}_$${arch} ./grafana-plugin/pkg || exit 1; \
	done

.PHONY: generate
generate: generate-proto generate-bpf ## Regenerate protobuf code and the eBPF objects

.PHONY: generate-proto
generate-proto: ## Regenerate protobuf code (needs protoc; installs the pinned plugins)
	@command -v protoc >/dev/null || { echo "installing protobuf-compiler"; apt-get update -qq && apt-get install -y -qq protobuf-compiler; }
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	$(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	PATH="$(GOBIN_DIR):$$PATH" protoc -I proto \
		--go_out=. --go_opt=module=github.com/tripwire-project/tripwire \
		--go-grpc_out=. --go-grpc_opt=module=github.com/tripwire-project/tripwire \
		proto/tripwire/v1/ingest.proto

# The eBPF programs are compiled by clang through bpf2go; the objects are committed so
# that building the agent needs no clang. Regenerating them with the same clang gives
# the same bytes, which check-generated verifies.
BPF_PACKAGES := ./agent/procwatch ./agent/netwatch ./agent/sigwatch

.PHONY: generate-bpf
generate-bpf: ## Recompile the eBPF programs (needs clang, llvm and libbpf-dev)
	@command -v clang >/dev/null || { echo "installing clang llvm libbpf-dev"; apt-get update -qq && apt-get install -y -qq clang llvm libbpf-dev; }
	$(GO) generate $(BPF_PACKAGES)

.PHONY: check-generated
check-generated: generate ## Fail if generated code differs from what is committed
	git diff --exit-code -- proto/ agent/procwatch agent/netwatch agent/sigwatch

##@ Run
.PHONY: demo
demo: build ## Collector on the embedded store + an agent with example tripwires; shows alerts live
	./deploy/demo/demo.sh

##@ Test
.PHONY: test
test: deps lint check-generated build-all test-plugin-frontend ## Run every test (unit, kernel, end to end, plugin), installing what it needs
	$(GO) test -race -count=1 -timeout 40m $(GO_PACKAGES)

.PHONY: test-plugin-frontend
test-plugin-frontend: ## Type-check and unit-test the Grafana plugin's frontend (npm ci from the lockfile)
	cd grafana-plugin && npm ci --no-audit --no-fund && npm run typecheck && npm run test:ci

.PHONY: deps
deps: ## Install the system packages the tests need (Debian)
	@./deploy/scripts/install-deps.sh

.PHONY: bench
bench: deps build ## Print the benchmark figures (see bench/README.md)
	$(GO) run ./bench/chain
	$(GO) run ./bench/latency
	$(GO) run ./bench/forensics
	$(GO) run ./bench/agent -bin $(BIN)
	$(GO) run ./bench/grafana
	$(GO) run ./bench/fleet -bin $(BIN)

.PHONY: lint
lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(GO_PACKAGES)

.PHONY: clean
clean: ## Remove build output and demo state
	rm -rf $(BIN) demo
