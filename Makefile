# Tally: `make run` serves the demo, `make test` runs the suite.
# Both set up .venv on first use and reuse it afterwards.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000
export HOST PORT

.PHONY: run test lint install migrate browser-test clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

migrate: install
	$(BIN)/python manage.py migrate --noinput

# Serve on http://$(HOST):$(PORT). With REDIS_URL set, the Celery worker and
# beat run beside daphne (honcho runs the Procfile); otherwise tasks run eagerly
# inside the web process.
run: migrate
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/python manage.py seed_demo --if-empty
	@echo "Tally is starting on http://$(HOST):$(PORT)/  (Ctrl-C stops it)"
	@echo "To watch Live Mode, open http://$(HOST):$(PORT)/demo/usage/?live=1 and, in another terminal, run:"
	@echo "    $(BIN)/python manage.py simulate_traffic --rate 5 --url http://$(HOST):$(PORT)"
ifdef REDIS_URL
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start
else
	$(BIN)/daphne -b $(HOST) -p $(PORT) usage_site.asgi:application
endif

# The suite, then the browser tests in their own process (Playwright's sync
# API spoils the event loop for later asyncio tests, DESIGN §11).
test: lint
	$(BIN)/python -m pytest
	$(MAKE) --no-print-directory browser-test

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

browser-test: install
	$(BIN)/python -m pytest -m browser tests/browser; status=$$?; \
	  if [ $$status -eq 5 ]; then echo "no browser tests collected"; exit 0; fi; exit $$status

clean:
	rm -rf $(VENV) staticfiles artifacts *.egg-info
