# The two commands: `make run` starts the whole server on this machine;
# `make test` runs the whole test suite against the real Postgres and NATS.

GO        ?= go
BIN       := bin/spooled
PORT      ?= 8080
GOTESTFLAGS ?=
BENCH_DB  ?= bench
BENCHFLAGS ?=

.PHONY: run build test bench generate check-generated vet lint fmt services clean

run: build services ## build and start the server with development defaults
	@SPOOLED_DEV_BOOTSTRAP=true PORT=$(PORT) ./$(BIN) serve

build:
	$(GO) build -o $(BIN) ./cmd/spooled

services: ## start Postgres and NATS if they are down; create the databases
	@./scripts/ensure-services.sh spooled test

test: services ## the whole suite, race detector on
	$(GO) test -race -count=1 -timeout 20m $(GOTESTFLAGS) ./...

bench: ## throughput and latency next to River on the local Postgres; writes bench/RESULTS.md (under 10 minutes)
	@./scripts/ensure-services.sh $(BENCH_DB)
	start=$$(date +%s); cd bench && $(GO) build -o ../bin/spooled-bench . && \
		../bin/spooled-bench -deadline $$((start + 570)) -db 'postgres://postgres@127.0.0.1:5432/$(BENCH_DB)?sslmode=disable' $(BENCHFLAGS)

generate: ## regenerate the sqlc code from sql/ and queries/
	$(GO) tool sqlc generate

check-generated: generate ## fail if the committed generated code is stale
	@git diff --exit-code -- queries/ || (echo "queries/: generated code is stale; run make generate and commit" >&2; exit 1)
	@test -z "$$(git status --porcelain -- queries/)" || (echo "queries/: untracked generated files; run make generate and commit" >&2; git status --porcelain -- queries/; exit 1)

vet: ## go vet, of the bench module too (a change to a query's parameters must not break make bench unnoticed)
	$(GO) vet ./...
	cd bench && $(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

lint: vet ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:" >&2; echo "$$out" >&2; exit 1; fi

clean:
	rm -rf bin
