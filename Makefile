# LM-Action: `make build` (set up and run the pipeline), `make run` (serve the Space),
# `make test` (the test suite). Everything installs into .venv; system packages via apt.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BUILD := build
PRESET ?= cpu-quick
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: build run test test-fast screenshots system-deps clean-build help

help:
	@echo "make build   create .venv, install, run the full pipeline into $(BUILD)/"
	@echo "make run     build if needed, then serve the Space on http://127.0.0.1:7860"
	@echo "make test    the test suite (installs PostgreSQL and Chromium if missing)"

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

$(BUILD)/hub/model/config.json: $(STAMP)
	$(PY) -m pipeline all --preset $(PRESET) --build-dir $(BUILD)

build: $(STAMP)
	$(PY) -m pipeline all --preset $(PRESET) --build-dir $(BUILD)

run: $(BUILD)/hub/model/config.json
	$(PY) -m space.app --host 127.0.0.1 --port 7860

# PostgreSQL (job database tests) and Chromium (browser tests) come from Debian.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	dpkg -s fonts-noto-core >/dev/null 2>&1 || missing="$$missing fonts-noto-core fonts-noto-color-emoji"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

test: $(STAMP) system-deps
	$(PY) -m pytest tests

test-fast: $(STAMP)
	$(PY) -m pytest tests -m "not slow and not browser and not postgres"

screenshots: $(STAMP) system-deps $(BUILD)/hub/model/config.json
	$(PY) -m pytest tests/space/test_browser.py -m browser --screenshots-dir $(BUILD)/reports \
	  --space-model-dir $(BUILD)/hub/model --space-dataset-dir $(BUILD)/hub/dataset --space-reports-dir $(BUILD)/reports

clean-build:
	rm -rf $(BUILD)
