# ctwa-operator — every command a developer or CI needs.
SHELL := /usr/bin/env bash
CARGO ?= cargo

.PHONY: all build test fmt-check clippy crds crds-check chart-check demo demo-down control-plane-up control-plane-down clean docs docs-check bench image-check monitoring-check workflows-check compat-check

all: build

build:
	$(CARGO) build --workspace

## make test: everything CI runs — formatting, lints, CRD drift, unit and integration tests
## against a real kube-apiserver + etcd (built once and cached under ~/.cache/ctwa-operator).
test: fmt-check clippy crds-check docs-check chart-check monitoring-check workflows-check compat-check image-check
	@was_up=$$(scripts/control-plane.sh status >/dev/null 2>&1 && echo yes); \
	scripts/control-plane.sh up >/dev/null || exit 1; \
	rm -rf target/test-logs; \
	CTWA_TEST_LOG_DIR=$(CURDIR)/target/test-logs $(CARGO) test --workspace && \
	CTWA_TEST_LOG_DIR=$(CURDIR)/target/test-logs $(CARGO) test --test log_secrets -- --ignored; rc=$$?; \
	[ -n "$$was_up" ] || scripts/control-plane.sh down; \
	exit $$rc

## make compat-check: the oldest Kubernetes minor the chart declares (1.30) accepts the CRDs,
## their CEL rules, the examples and the chart (scripts/compat-check.sh).
compat-check:
	scripts/compat-check.sh

## make workflows-check: actionlint on .github/workflows (the release workflow).
workflows-check:
	scripts/lint-workflows.sh

## make image-check: the Dockerfile's build stage, reproduced from exactly its context
## (.dockerignore), and the binary checked against the runtime image (scripts/image-build.py).
image-check:
	scripts/image-build.py

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## make crds: regenerate crds/ and the chart's files/crds/ from the Rust types.
crds:
	@rm -f crds/*.yaml charts/ctwa-operator/files/crds/*.yaml
	$(CARGO) run -q --bin ctwa-operator -- crds --output-dir crds
	@mkdir -p charts/ctwa-operator/files/crds
	cp crds/*.yaml charts/ctwa-operator/files/crds/

crds-check:
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	$(CARGO) run -q --bin ctwa-operator -- crds --output-dir $$tmp && \
	if ! diff -ru crds $$tmp || ! diff -ru charts/ctwa-operator/files/crds $$tmp; then \
	  echo "crds/ or charts/ctwa-operator/files/crds/ is out of date: run 'make crds' and commit the result" >&2; exit 1; fi

## make chart-check: the chart README matches values.yaml (regenerate it with
## scripts/gen-chart-readme.py), and helm lint --strict passes.
chart-check:
	python3 scripts/gen-chart-readme.py --check
	@helm=$$(scripts/go-tool.sh helm) && $$helm lint --strict charts/ctwa-operator

## make demo: the control plane, the fake upstream APIs and the operator, with examples/ applied.
demo:
	@scripts/demo.sh up

demo-down:
	@scripts/demo.sh down

control-plane-up:
	@scripts/control-plane.sh up >/dev/null && scripts/control-plane.sh env

control-plane-down:
	@scripts/control-plane.sh down

clean:
	scripts/control-plane.sh down || true
	$(CARGO) clean

## make docs: regenerate docs/api.md (from the CRD schemas) and docs/health/ (Argo CD health checks).
docs:
	CTWA_UPDATE_DOCS=1 $(CARGO) test -q --lib apidocs
	scripts/gen-health-checks.sh

## make docs-check: fail when docs/api.md or docs/health/ is out of date.
docs-check:
	$(CARGO) test -q --lib apidocs
	scripts/gen-health-checks.sh --check

## make monitoring-check: the chart's PrometheusRule and Grafana dashboard, checked with helm and
## promtool (both built once into ~/.cache/ctwa-operator): rules, rule unit tests, every query.
monitoring-check:
	scripts/check-monitoring.sh

## make bench: the benchmarks of BENCHMARKS.md (minutes; not part of make test).
bench:
	@scripts/control-plane.sh up >/dev/null
	@rm -rf target/bench && mkdir -p target/bench
	$(CARGO) bench --no-run --bench pipeline --bench e2e
	@head -1 /proc/stat > target/bench/cpu-before
	$(CARGO) bench --bench pipeline -- --warm-up-time 2 --measurement-time 10 | tee target/bench/pipeline.txt
	$(CARGO) bench --bench e2e
	@head -1 /proc/stat > target/bench/cpu-after
	scripts/bench-report.sh > BENCHMARKS.md
