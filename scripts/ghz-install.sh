#!/usr/bin/env bash
# Installs ghz (https://ghz.sh), which `make load` uses to drive its gRPC
# targets when it is on $PATH (it falls back to its own Go generator
# without it), with `go install` at a fixed version into $(go env GOPATH)/bin,
# and prints that directory on stdout for the caller to put on $PATH.
# Does nothing but print the directory when ghz is already there. ghz is
# not pinned in a go.mod: as a tool of bench/go.mod it does not build (its
# protoreflect conflicts with the protocompile buf pins). `make test`
# does not need ghz (its one test of a real ghz run skips without it), so
# a failed install is reported and not fatal. Messages go to stderr.
set -euo pipefail

version=v0.93.0
bin="$(go env GOPATH)/bin"
echo "$bin"
if [ -x "$bin/ghz" ]; then
  echo "ghz-install: $bin/ghz is already installed" >&2
  exit 0
fi
if ! GOBIN="$bin" go install "github.com/bojand/ghz/cmd/ghz@$version" >&2; then
  echo "ghz-install: go install github.com/bojand/ghz/cmd/ghz@$version failed: make load will use its Go generator for gRPC" >&2
  exit 0
fi
echo "ghz-install: installed $bin/ghz ($version)" >&2
