# dtvla — developer and CI entry points (GNU make). `make help` lists the targets.
#
# `make setup` installs everything a fresh Debian 12 + Python 3.11 machine needs, idempotently:
#   apt packages (only if missing) -> .venv -> torch FIRST (pinned CPU wheel) -> runtime + dev requirements
#   -> deepspeed (DS_BUILD_OPS=0, --no-build-isolation) -> the project's packages (non-editable, so the ament
#   share files land in .venv/share). Every pip call uses requirements/constraints.txt, the one place for versions.
# Recipes that use the venv run with scripts/ros_env.sh sourced (LD_LIBRARY_PATH, AMENT_PREFIX_PATH, RMW, MUJOCO_GL).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON ?= python3.11
VENV := .venv
VPY := $(VENV)/bin/python
PIP := $(VPY) -m pip
PIP_FLAGS := --progress-bar off -c requirements/constraints.txt
RUN := . $(VENV)/bin/activate && . scripts/ros_env.sh &&
PYTEST_ARGS ?=
# `make sim` with no SIM_ARGS runs the committed demo policy (if there is one) on a libero_spatial task and held-out
# init state where blind replay of a demonstration fails (docs/training.md "The committed demo checkpoint").
DEMO_CHECKPOINT := assets/demo_checkpoint
DEMO_SIM_ARGS := --checkpoint $(DEMO_CHECKPOINT) --suite libero_spatial --task-id 0 --init-state 40
SIM_ARGS ?= $(if $(wildcard $(DEMO_CHECKPOINT)/config.json),$(DEMO_SIM_ARGS))
DATASET_DIR ?= out/synthetic-dataset
DEMO_DIR ?= runs/demo

SETUP_STAMP := $(VENV)/.setup-stamp
PKG_STAMP := $(VENV)/.packages-stamp
REQS := $(wildcard requirements/*.txt)
PKG_DIRS := ros2_ws/src/dtvla_policy ros2_ws/src/dtvla_sim_bridge training
PKG_BUILD_JUNK = $(addsuffix /build,$(PKG_DIRS)) $(addsuffix /*.egg-info,$(PKG_DIRS))
# Content hash of every file of the packages, plus the root config/ and launch/ that dtvla_policy installs into its
# share (in-tree build outputs skipped). Rewritten only when it changes, so edits, additions and deletions trigger
# a reinstall whatever the files' mtimes (a copy with preserved mtimes included).
PKG_MANIFEST := $(VENV)/.packages-manifest
PKG_FIND := find $(wildcard $(PKG_DIRS) config launch) \( -name build -o -name '*.egg-info' -o -name __pycache__ \) -prune \
	-o -type f ! -name '*.pyc' -print0

.PHONY: help setup packages sim dataset demo-checkpoint test test-all lint format clean FORCE

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

setup: $(PKG_STAMP) ## install apt packages, .venv, pinned requirements and the project packages (idempotent)

packages: $(PKG_STAMP) ## (re)install the project packages if their sources changed

$(SETUP_STAMP): $(REQS) scripts/setup_apt.sh
	bash scripts/setup_apt.sh $(PYTHON)
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install $(PIP_FLAGS) --upgrade pip setuptools
	$(PIP) install $(PIP_FLAGS) torch
	$(PIP) install $(PIP_FLAGS) -r requirements/runtime.txt -r requirements/dev.txt
	DS_BUILD_OPS=0 $(PIP) install $(PIP_FLAGS) --no-build-isolation -r requirements/train.txt
	touch $@

$(PKG_MANIFEST): FORCE
	@mkdir -p $(@D)
	@$(PKG_FIND) | LC_ALL=C sort -z | xargs -0 -r sha1sum > $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv -f $@.tmp $@; fi

# Non-editable on purpose: `pip install -e` does not install data_files (ament index, launch, config).
$(PKG_STAMP): $(SETUP_STAMP) $(PKG_MANIFEST)
	rm -rf $(PKG_BUILD_JUNK)
	$(PIP) install --progress-bar off --no-deps --no-build-isolation --force-reinstall $(addprefix ./,$(PKG_DIRS))
	rm -rf $(PKG_BUILD_JUNK)
	touch $@

sim: setup ## run one LIBERO episode: policy node + sim bridge over ROS 2 (SIM_ARGS="--checkpoint DIR ...")
	@$(if $(SIM_ARGS),,echo "No $(DEMO_CHECKPOINT) here: \`make demo-checkpoint\` builds a trained demo policy (hours)." >&2)
	$(RUN) dtvla-sim $(SIM_ARGS)

dataset: setup ## write a tiny synthetic CoT dataset (LeRobot v2.1 layout) to $(DATASET_DIR)
	@if [ -f $(DATASET_DIR)/meta/info.json ]; then echo "$(DATASET_DIR) exists"; \
	else $(RUN) dtvla-synthetic-dataset $(DATASET_DIR); fi

demo-checkpoint: setup ## demos -> CoT -> SFT -> held-out eval -> bf16 export in $(DEMO_DIR) (hours; rerun resumes)
	$(RUN) DEMO_DIR=$(DEMO_DIR) bash scripts/demo_checkpoint.sh

test: setup ## ruff check + pytest (without tests marked slow)
	$(RUN) ruff check . && pytest -m "not slow" $(PYTEST_ARGS)

test-all: setup ## ruff check + pytest including slow tests
	$(RUN) ruff check . && pytest $(PYTEST_ARGS)

lint: setup ## ruff check + ruff format --check
	$(RUN) ruff check . && ruff format --check .

format: setup ## ruff format + ruff check --fix
	$(RUN) ruff format . && ruff check --fix .

clean: ## remove .venv and build outputs
	rm -rf $(VENV) $(PKG_BUILD_JUNK) build install log ros2_ws/build ros2_ws/install ros2_ws/log \
		.pytest_cache .ruff_cache
