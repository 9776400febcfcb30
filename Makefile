# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: run test test-unit bench migrate lambda clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

migrate: $(VENV)/.runtime
	$(BIN)/flask --app wsgi migrate

run: migrate
	$(BIN)/gunicorn wsgi:app -c gunicorn.conf.py --bind 127.0.0.1:$(PORT)

test: $(VENV)/.dev
	PATH="$(CURDIR)/$(BIN):$$PATH" scripts/test.sh

test-unit: $(VENV)/.dev
	$(BIN)/pytest -q tests/unit

bench: $(VENV)/.dev
	PATH="$(CURDIR)/$(BIN):$$PATH" bench/run.sh

lambda: | $(BIN)/python
	$(BIN)/python deploy/build_lambda.py

clean:
	rm -rf $(VENV) instance/gateway.db* .pytest_cache
