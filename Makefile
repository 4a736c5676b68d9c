# The two commands of the README:  `make run` (the whole pipeline on the embedded
# motion-world default) and `make test` (the test suite, as CI runs it). Both set up
# the project-local virtualenv first (.venv), so they work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Re-install only when a requirements file or pyproject.toml changed.
STAMP := $(VENV)/.installed-$(shell cat requirements/*.txt pyproject.toml | sha256sum | cut -c1-12)

# Telemetry off, never reach for the Hugging Face hub in tests, project-local Prefect home.
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export PREFECT_HOME ?= $(CURDIR)/.prefect
# A flow run without a server starts a temporary one; its first start on a fresh PREFECT_HOME
# (database migrations) takes longer than Prefect's default 20 s on a 2-core machine.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180
export PYTHONUNBUFFERED := 1

.PHONY: setup run test test-slow bench prefect-up prefect-down deployment-run ablations baselines baselines-seeds clean-outputs

setup: $(STAMP)

# The venv takes ~7 GB (PyPI's Linux torch is a CUDA build): say so before pip runs out of
# disk half-way ("OSError: [Errno 28] No space left on device").
SETUP_MIN_FREE_GB ?= 8
VENV_PARENT := $(dir $(abspath $(VENV)))

# Check the disk of the venv's folder; then torch + torchvision first, on their own (pinned:
# see requirements/torch.txt), and everything else under constraints.txt so no package can swap torch.
$(STAMP):
	@free_kb=$$(df -Pk $(VENV_PARENT) | awk 'NR==2 {print $$4}'); \
	if [ "$$free_kb" -lt $$(( $(SETUP_MIN_FREE_GB) * 1024 * 1024 )) ]; then \
	  echo "make setup: only $$(( free_kb / 1024 / 1024 )) GB free on the disk of $(VENV_PARENT);" \
	       "installing $(VENV) needs ~$(SETUP_MIN_FREE_GB) GB (the venv alone is ~7 GB)." \
	       "Free some space (old clones, ~/.cache/pip), or set SETUP_MIN_FREE_GB=0 to try anyway." >&2; \
	  exit 1; \
	fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements/torch.txt
	$(BIN)/python -m pip install -q -r requirements/base.txt -c requirements/constraints.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $@

## The main job: render the motion world, train its base model, tune all 8 motions,
## generate the 48 eval videos, score them and write reports/: the stages of `dvc repro report`,
## per-motion stages two at a time on a CPU (lamp/repro.py, params.yaml runner.jobs; a plain
## `dvc repro report` does the same one stage at a time). `dvc repro controlnet`, for `lamp edit`,
## is not part of it.
run: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m lamp.repro report
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc metrics show

## The test suite (what .ci/run calls). Slow quality runs are excluded: `make test-slow`.
## Two pytest-xdist workers (one per core of CI's 2-core machine, one torch thread each), a test
## file per worker at a time (module fixtures are built once); TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
test: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test-slow: setup  # the slow quality runs (tests marked slow; 2-core CPU ~36 min, 2026-12-04)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q -m slow

bench: setup
	$(BIN)/python -m benchmarks.bench_model --config small --repeats 3 --sample-repeats 1 --ddim-steps 20
	$(BIN)/python -m benchmarks.bench_latent_cache --vae small,sd --repeats 1

## Local Prefect server + process work pool + worker (127.0.0.1), and their clean stop.
prefect-up: setup
	PATH=$(CURDIR)/$(BIN):$$PATH scripts/prefect_up.sh

prefect-down:
	PATH=$(CURDIR)/$(BIN):$$PATH scripts/prefect_down.sh

## With the local server up (make prefect-up): all 8 motions through the deployment, and
## the ablation comparison (MLflow -> reports/ablations/).
deployment-run:
	PATH=$(CURDIR)/$(BIN):$$PATH PREFECT_API_URL=http://127.0.0.1:4200/api \
	  prefect deployment run 'lamp-all-motions/default' --watch

ABLATION_SEEDS ?= 0 1 2  # a seed sets base, tuning and sampling; the table gives mean ± std (~70-80 min a seed at 1 torch thread on a 2-core CPU, +10 min for a seed's own base)
ablations: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m flows.ablations --seeds $(ABLATION_SEEDS)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m flows.compare

## The paper's Table 1 on our data: Tune-A-Video, Text2Video-Zero and AnimateDiff beside LAMP on the
## same test prompts and seeds (sample.seeds), scored like the main job -> reports/baselines/
## (`dvc repro baselines`: builds LAMP's chain first if needed; not part of `make run`).
baselines: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc repro baselines
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc metrics show reports/baselines/metrics.json

## Table 1 over seeds (the README's table): every method trained and sampled once per seed; the seed
## params.yaml uses is `make baselines`' own, each other one ~32 min on 2 cores.
BASELINE_SEEDS ?= 0,1,2
baselines-seeds: baselines
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m benchmarks.baseline_seeds --seeds $(BASELINE_SEEDS) \
	  --out benchmarks/results/baselines_seeds.json
