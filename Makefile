# The two commands of the README:
#   make app    create/reuse the project venv .venv, install the runtime requirements, start the app on the shipped
#               weights (http://127.0.0.1:7860)
#   make test   the same venv, the test requirements, Debian chromium (browser tests), then every test
# Both work on a bare Debian machine whose system Python is "externally managed": nothing is installed outside .venv
# except the Debian packages (chromium, dataset-fashion-mnist for training), each announced on one line.
SHELL := bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# pip -q still prints one warning per missing local index of a machine's pip config: those lines are dropped
PIP = $(PY) -m pip install -q --disable-pip-version-check
QUIET = 2>&1 | { grep -v "^WARNING: Location" || true; }
APT := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends

.PHONY: app install install-dev test test-fast bench bench-quick eval train-all screenshots

$(PY):
	@echo "==> creating the project venv $(VENV) (reused from now on)"
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { echo "==> installing python3-venv"; \
		(apt-get update -qq && $(APT) python3-venv >/dev/null) && $(PYTHON) -m venv $(VENV); }

install: $(PY)
	@echo "==> torch 2.13.0 (CPU wheel) and requirements.txt into $(VENV)"
	@$(PIP) torch==2.13.0 $(QUIET)
	@$(PIP) -r requirements.txt $(QUIET)

install-dev: install
	@echo "==> requirements-dev.txt into $(VENV)"
	@$(PIP) -r requirements-dev.txt $(QUIET)
	@command -v chromium >/dev/null 2>&1 || { echo "==> Debian chromium (browser tests; a minute)"; \
		(apt-get update -qq && $(APT) chromium >/dev/null 2>&1) || \
		echo "    could not install chromium: the browser tests will be skipped"; }
	@test -d /usr/share/datasets/fashion-mnist || { echo "==> Debian dataset-fashion-mnist (for training)"; \
		($(APT) dataset-fashion-mnist >/dev/null 2>&1 || (apt-get update -qq && \
		$(APT) dataset-fashion-mnist >/dev/null 2>&1)) || echo "    could not install it: training Fashion-MNIST \
		models needs it, the tests do not"; }

app: install
	$(PY) app.py $(ARGS)

test: install-dev
	GRADIO_ANALYTICS_ENABLED=False $(PY) -m pytest -q

test-fast:
	GRADIO_ANALYTICS_ENABLED=False $(PY) -m pytest -q -x --ignore=tests/test_app_browser.py

bench:
	$(PY) -m benchmarks.run --json benchmarks/results.json
	$(PY) -m benchmarks.readme --results benchmarks/results.json --readme README.md

bench-quick:
	$(PY) -m benchmarks.run --quick --json benchmarks/results-quick.json

eval:
	$(PY) -m benchmarks.run --only quality --json benchmarks/quality.json

train-all:
	bash training/train_all.sh

screenshots:
	CNNIMG_TEST_WEIGHTS=weights CNNIMG_SCREENSHOTS=docs/screenshots $(PY) -m pytest -q tests/test_app_browser.py
