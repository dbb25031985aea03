# The two set-up commands of the README. Each creates/refreshes .venv first (safe to re-run).
VENV ?= .venv
export I2I_VENV := $(VENV)
export RAY_AUTH_MODE ?= disabled
export RAY_USAGE_STATS_ENABLED ?= 0
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER ?= 0

.PHONY: venv quickstart test bench

venv:
	@scripts/venv.sh

## Main job: build the demo datasets and run the whole quickstart pipeline on embedded defaults
## (local Ray, data/ as the object store, MLflow on sqlite): shard → train → evaluate → register → promote.
quickstart: venv
	$(VENV)/bin/i2i data demo --out data/demo
	$(VENV)/bin/i2i nightly --config jobs/configs/quickstart.yaml

## All tests (unit + integration with a real S3 server, MLflow server, local Ray cluster, headless Chromium).
test: venv
	@scripts/browser.sh
	$(VENV)/bin/python -m pytest

bench: venv
	$(VENV)/bin/python benchmarks/shard_throughput.py
	$(VENV)/bin/python benchmarks/train_step.py
	$(VENV)/bin/python benchmarks/translate_throughput.py
