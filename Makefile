# tokend: make run starts it, make test checks everything.
GO ?= go
GOTEST_FLAGS ?= -race -shuffle=on -count=1
FUZZTIME ?= 5s

.PHONY: run build test unit load-unit lint generate check-generate openapi-lint k8s-check fuzz fuzz-short clean bench

## run: start tokend on its embedded store in ./data (REST :8080, gRPC :9090 on loopback)
run:
	$(GO) run ./cmd/tokend $(ARGS)

## build: static binaries in ./bin
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/ ./cmd/...

## test: generated code up to date, lint, then the whole suite under -race
test: check-generate lint openapi-lint k8s-check check-web web-test unit load-unit interop-test fuzz-short

unit:
	$(GO) test $(GOTEST_FLAGS) ./...

## load-unit: the tests of make load's harness (bench/load, in the bench module)
load-unit:
	cd bench && $(GO) vet ./load && $(GO) test $(GOTEST_FLAGS) ./load

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './gen/*')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool buf lint

## generate: regenerate gen/ from proto/ (offline, plugins pinned in go.mod)
generate:
	rm -rf gen
	$(GO) tool buf generate
	$(GO) run ./internal/cmd/openapifix gen/openapi/tokend.swagger.json

## check-generate: fail if regenerating would change gen/
check-generate:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  $(GO) tool buf generate --output "$$tmp" && \
	  $(GO) run ./internal/cmd/openapifix "$$tmp/gen/openapi/tokend.swagger.json" && \
	  if ! diff -r gen "$$tmp/gen"; then echo "gen/ is stale: run make generate and commit"; exit 1; fi && \
	  echo "gen/ is up to date"

## openapi-lint: gen/openapi/tokend.swagger.json through Redocly's recommended rules and
## swagger-parser's validation (pinned npm packages in interop/openapi)
openapi-lint:
	@cd interop/openapi && npm ci --no-audit --no-fund --loglevel=error
	cd interop/openapi && npx --no-install redocly lint --format=summary --config redocly.yaml ../../gen/openapi/tokend.swagger.json
	cd interop/openapi && node validate.mjs ../../gen/openapi/tokend.swagger.json

## k8s-check: the Kubernetes manifests in deploy/kubernetes decoded strictly into the
## k8s.io/api types (its own module, so tokend's go.mod does not carry k8s.io/api)
k8s-check:
	cd deploy/kubernetes/schema && $(GO) test -count=1 ./...

## fuzz-short: every fuzz target for a few seconds (part of make test)
fuzz-short:
	@$(MAKE) --no-print-directory fuzz FUZZTIME=2s

## fuzz: run each fuzz target for FUZZTIME. Go's fuzzing coordinator
## sometimes reports its own deadline ("context deadline exceeded", no
## failing input) as a failure when -fuzztime ends mid-exchange with a
## worker: such a run, and only such a run, is tried again (twice at most). A real
## failure writes its input under testdata/fuzz, which the retry runs first.
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    for try in 1 2 3; do \
	      echo "fuzz $$pkg $$f"; \
	      out=$$($(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg 2>&1); st=$$?; echo "$$out"; \
	      [ $$st -eq 0 ] && break; \
	      if [ $$try -lt 3 ] && echo "$$out" | grep -q 'context deadline exceeded' && ! echo "$$out" | grep -q 'Failing input written'; then \
	        echo "fuzz $$pkg $$f: the fuzzing coordinator's deadline, not a failing input: again"; continue; \
	      fi; \
	      exit 1; \
	    done; \
	  done; done

clean:
	rm -rf bin

## bench: the mint core against its floor and twilio-go's ToJwt, in one run, with the ratios
bench:
	cd bench && BENCH_RATIOS=1 $(GO) test -run TestRatios -v -count=1 .

## scale: tokend on 100,000 applications and 200,000 keys (SQLite and PostgreSQL: needs TOKEND_TEST_POSTGRES)
scale:
	TOKEND_SCALE=1 $(GO) test -count=1 -v -run '^TestScale$$' ./e2e/

## load: the whole service (auth, policy, audit on) under load against bare gRPC and HTTP servers, with the ratios
## (make load ARGS='-duration 5s -concurrency 64'; with ARGS='-enforce' the harness exits 1 on a missed
## target, 2 when it failed to run: make stops with "Error 1" or "Error 2", and exits 2 either way)
load:
	cd bench && $(GO) build -o ../bin/loadbench ./load
	cd bench && GO="$(GO)" ../bin/loadbench $(ARGS)

.PHONY: load scale

## web: install the page's pinned npm packages and build it into server/web/assets (commit the result)
web:
	cd web && npm ci --no-audit --no-fund --loglevel=error
	cd web && node build.mjs ../server/web/assets

## check-web: fail if rebuilding the page would change server/web/assets
check-web:
	@cd web && npm ci --no-audit --no-fund --loglevel=error
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  (cd web && node build.mjs "$$tmp/assets") && \
	  if ! diff -rq server/web/assets "$$tmp/assets"; then echo "server/web/assets is stale: run make web and commit"; exit 1; fi && \
	  echo "server/web/assets is up to date"

## web-test: the page's own unit tests (token arithmetic; node only, no npm packages)
web-test:
	node --test web/test/

## browser-test: the page's unit tests, then the page in headless Chromium against a real tokend
## (Chromium from TOKEND_TEST_CHROMIUM or the PATH; scripts/browser-deps.sh installs it)
browser-test: web-test
	@chromium="$${TOKEND_TEST_CHROMIUM:-$$(command -v chromium || true)}"; \
	  if [ -z "$$chromium" ]; then echo "no Chromium: run scripts/browser-deps.sh (as root) and set TOKEND_TEST_CHROMIUM to the path it prints"; exit 1; fi; \
	  TOKEND_TEST_CHROMIUM="$$chromium" $(GO) test $(GOTEST_FLAGS) -v -run '^TestBrowser$$' ./server/web/

## interop-test: tokens from a running tokend checked with the twilio and jsonwebtoken npm packages
interop-test:
	GO="$(GO)" bash interop/run.sh

.PHONY: web check-web web-test browser-test interop-test
