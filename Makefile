# The README's two commands: `make run` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_DIR ?= $(abspath ../shared/data)

export MTLSEARCH_DATA_DIR ?= $(DATA_DIR)
# What mypy checks (pyproject's [tool.mypy] settings, tests included with no relaxation).
MYPY_PATHS := mtl_core storage service mtlsearch tests

.PHONY: run test lint typecheck venv lock clean swagger-ui

venv: $(STAMP)

# Every package comes from requirements.lock, pinned and hashed; the project itself is installed
# on top without resolving anything. torch is locked to 2.13.0+cpu, the CPU build that lies on
# these machines: its hash matches no CUDA build, so pip can never download one.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

# Upgrade on purpose: re-resolve every dependency within pyproject.toml's ranges, then run
# `make test` on the new versions before committing the new lock.
lock: $(STAMP)
	$(BIN)/pip-compile --upgrade --allow-unsafe --constraint=constraints-lock.txt --extra=dev \
		--generate-hashes --no-emit-find-links --no-emit-index-url \
		--output-file=requirements.lock --strip-extras pyproject.toml

# Swagger UI for /docs, served from service/static/swagger-ui/ (no CDN): the files of the npm
# package swagger-ui-dist at this version, byte for byte (npm pack checks the registry's
# integrity). After changing the version: make swagger-ui, update that folder's README, commit.
SWAGGER_UI_VERSION := 5.36.0
SWAGGER_UI_FILES := swagger-ui-bundle.js swagger-ui-bundle.js.LICENSE.txt swagger-ui.css \
	favicon-32x32.png LICENSE NOTICE
swagger-ui:
	tmp=$$(mktemp -d) && (cd $$tmp && npm pack -q swagger-ui-dist@$(SWAGGER_UI_VERSION) >/dev/null \
		&& tar xzf swagger-ui-dist-$(SWAGGER_UI_VERSION).tgz) \
		&& (cd $$tmp/package && cp $(SWAGGER_UI_FILES) $(CURDIR)/service/static/swagger-ui/) \
		&& rm -rf $$tmp

run: $(STAMP)
	$(BIN)/mtlsearch up

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(MYPY_PATHS)
	$(BIN)/lint-imports
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy $(MYPY_PATHS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
