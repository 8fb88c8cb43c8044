# Pipeline Lab: two commands for a fresh machine.
#   make run   - create .venv from requirements.txt and start the dashboard on 127.0.0.1
#   make test  - create .venv with the dev requirements and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8501
TEST_WORKERS ?= 2  # pytest-xdist workers for the tests outside tests/e2e
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: run test lint format bench venv dev-venv clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.runtime-installed: requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(VENV)/.runtime-installed $@

venv: $(VENV)/.runtime-installed
dev-venv: $(VENV)/.dev-installed

run: venv
	$(PY) -m streamlit run app.py --server.address 127.0.0.1 --server.port $(PORT)

test: dev-venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	@# Two lanes at once: the browser tests one after another (they share one dashboard
	@# server; their log is printed when both lanes end), the rest in pytest-xdist workers.
	@mkdir -p test-artifacts
	@$(PY) -m pytest tests/e2e > test-artifacts/e2e-lane.log 2>&1 & browser=$$!; \
	$(PY) -m pytest tests --ignore=tests/e2e -n $(TEST_WORKERS); rest=$$?; \
	wait $$browser; e2e=$$?; \
	echo "== browser tests (tests/e2e) =="; cat test-artifacts/e2e-lane.log; \
	echo "== exit status: browser tests $$e2e, other tests $$rest =="; \
	test $$rest -eq 0 && test $$e2e -eq 0

lint: dev-venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: dev-venv
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: venv
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
