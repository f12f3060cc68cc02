# tokend: make run starts it, make test checks everything.
GO ?= go
GOTEST_FLAGS ?= -race -shuffle=on -count=1
FUZZTIME ?= 5s

.PHONY: run build test unit lint generate check-generate fuzz clean bench

## run: start tokend on its embedded store in ./data (REST :8080, gRPC :9090 on loopback)
run:
	$(GO) run ./cmd/tokend $(ARGS)

## build: static binaries in ./bin
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/ ./cmd/...

## test: generated code up to date, lint, then the whole suite under -race
test: check-generate lint unit

unit:
	$(GO) test $(GOTEST_FLAGS) ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './gen/*')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool buf lint

## generate: regenerate gen/ from proto/ (offline, plugins pinned in go.mod)
generate:
	rm -rf gen
	$(GO) tool buf generate

## check-generate: fail if regenerating would change gen/
check-generate:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  $(GO) tool buf generate --output "$$tmp" && \
	  if ! diff -r gen "$$tmp/gen"; then echo "gen/ is stale: run make generate and commit"; exit 1; fi && \
	  echo "gen/ is up to date"

## fuzz: run each fuzz target for FUZZTIME
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; done

clean:
	rm -rf bin

## bench: the mint core against its floor and twilio-go's ToJwt, in one run, with the ratios
bench:
	cd bench && BENCH_RATIOS=1 $(GO) test -run TestRatios -v -count=1 .
