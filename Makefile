# Freshet — every target installs what it needs on a fresh Debian machine (as root).
# One cargo profile (release) serves run, test and bench so the dependency stack builds once.

CARGO        ?= cargo
PROFILE      := release
TARGET_DIR   := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
BIN          := $(TARGET_DIR)/$(PROFILE)
DATA         ?= $(CURDIR)/data
APT_PACKAGES := libclang-dev protobuf-compiler
VENV         := $(CURDIR)/.venv
# Pinned Python tools (NATS for the benchmark, Helm's Go SDK and Kubernetes' schemas for the tests).
PY_REQUIREMENTS := tests/python/requirements.txt
KINESALITE   := $(CURDIR)/tests/bench/node_modules/.bin/kinesalite

.PHONY: all deps build run test stress fuzz lint fmt bench venv crds e2e-kind clean

all: build

## deps: install the system packages the build needs (a C++ compiler and libclang for RocksDB, protoc for tonic).
deps:
	@command -v $(CARGO) >/dev/null 2>&1 || { echo "cargo not found: install Rust 1.89 or newer (https://rustup.rs; Debian's own rustc is older), then run make again" >&2; exit 1; }
	@missing=""; \
	{ command -v cc && command -v c++; } >/dev/null 2>&1 || missing="$$missing build-essential"; \
	command -v protoc >/dev/null 2>&1 || missing="$$missing protobuf-compiler"; \
	ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 || missing="$$missing libclang-dev"; \
	if [ -n "$$missing" ]; then \
	  echo "==> installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "need root to apt-get install$$missing (or install them yourself)"; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

## build: release binaries freshet-broker and freshet.
build: deps
	$(CARGO) build --$(PROFILE) --workspace --bins

## run: a local 3-node cluster on 127.0.0.1 (gRPC 50051-50053), data in ./data, Ctrl-C stops it.
run: build
	FRESHET_BIN=$(BIN) DATA=$(DATA) bash scripts/run-local.sh

## test: formatting, unit tests, multi-process cluster tests against real RocksDB, and the
## chart/CRD/manifest checks with Helm's Go SDK and Kubernetes' schemas.
test: build venv
	$(CARGO) fmt --all --check
	FRESHET_BIN=$(BIN) $(CARGO) test --$(PROFILE) --workspace -- --test-threads=2
	FRESHET_BIN=$(BIN) $(VENV)/bin/python -m pytest -q tests/python

## stress: a durability test in a loop, 3 copies at a time, keeping a failed run's data
## (ROUNDS=20 COPIES=3 TEST=sigkill_of_every_node by default).
stress: build
	$(CARGO) test --$(PROFILE) -p freshet-tests --test durability --no-run
	FRESHET_BIN=$(BIN) bash scripts/stress.sh

## fuzz: the Kinesis request decoder, SigV4, tokens and KPL unpacking under cargo-fuzz
## (nightly), FUZZ_SECONDS per target (300); not part of `make test`.
fuzz: deps
	bash scripts/fuzz.sh

## e2e-kind: kind cluster, images, helm install, a Stream, AWS CLI put/get, a scale-up (skips without Docker/kind).
e2e-kind:
	bash scripts/e2e-kind.sh

## crds: regenerate the CRD YAML in charts/freshet/crds/ from the Rust types in crds/.
crds: build
	$(BIN)/freshet-crdgen charts/freshet/crds

## lint: clippy with warnings as errors (same profile, so nothing is rebuilt from scratch).
lint: deps
	$(CARGO) clippy --$(PROFILE) --workspace --all-targets -- -D warnings

## venv: the Python virtualenv with the tools the project pins ($(PY_REQUIREMENTS)).
venv: $(VENV)/.ok
$(VENV)/.ok: $(PY_REQUIREMENTS)
	@command -v python3 >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null; }
	python3 -m venv $(VENV) || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null && python3 -m venv $(VENV); }
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r $(PY_REQUIREMENTS)
	touch $@

## bench: Freshet (gRPC and Kinesis API) against NATS JetStream and kinesalite on this machine,
## same workloads, same run (see docs/benchmarks.md).
bench: build venv $(KINESALITE)
	FRESHET_BIN=$(BIN) $(BIN)/freshet-bench --nats-server $(VENV)/bin/nats-server --kinesalite $(KINESALITE) \
	  --seconds $(or $(BENCH_SECONDS),15) --rounds $(or $(BENCH_ROUNDS),3)

# kinesalite, pinned by tests/bench/package-lock.json, with the machine's Node.js.
$(KINESALITE): tests/bench/package-lock.json
	@command -v npm >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; }
	cd tests/bench && npm ci --no-audit --no-fund --ignore-scripts
	touch $@

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
