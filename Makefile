# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: run test test-unit fuzz soak bench bench-scale demo migrate lambda clean

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

# The fuzz and bad-input tests with thousands of examples each (make test runs a few hundred), on SQLite.
FUZZ_EXAMPLES ?= 3000
fuzz: $(VENV)/.dev
	TEST_DATABASE=sqlite FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -q tests/e2e/test_fuzz_webhooks.py \
	  tests/e2e/test_fuzz_api.py tests/e2e/test_bad_input.py tests/unit/test_wire.py

# The 10,000-delivery soak of the README, on PostgreSQL (TEST_POSTGRES_URL, or the local cluster):
# with one dyno, then with two (two gunicorn masters and two workers on the one database).
soak: $(VENV)/.dev
	url=$$(PATH="$(CURDIR)/$(BIN):$$PATH" scripts/postgres.sh) && \
	  TEST_DATABASE=postgresql TEST_POSTGRES_URL="$$url" SOAK_DELIVERIES=10000 $(BIN)/pytest -q -s tests/soak

# The local demo: the gateway with every source configured by locally minted credentials.
demo: $(VENV)/.runtime
	$(BIN)/python -m devtools serve --port $(PORT)

bench: $(VENV)/.dev
	PATH="$(CURDIR)/$(BIN):$$PATH" bench/run.sh

# A million users on one PostgreSQL (bench/scale.sh; SCALE_USERS for another size).
bench-scale: $(VENV)/.dev
	PATH="$(CURDIR)/$(BIN):$$PATH" bench/scale.sh

lambda: | $(BIN)/python
	$(BIN)/python deploy/build_lambda.py

clean:
	rm -rf $(VENV) instance/gateway.db* .pytest_cache
