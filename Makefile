# The two commands of the README:
#   make app    install the runtime requirements and start the app on the shipped weights (http://127.0.0.1:7860)
#   make test   install the test requirements (and Debian chromium for the browser tests) and run every test
PYTHON ?= python3
PIP = $(PYTHON) -m pip install -q --disable-pip-version-check

.PHONY: app install install-dev test test-fast bench bench-quick eval train-all screenshots

install:
	$(PIP) torch==2.13.0
	$(PIP) -r requirements.txt

install-dev: install
	$(PIP) -r requirements-dev.txt
	@command -v chromium >/dev/null || command -v /usr/bin/chromium >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) || \
		echo "could not install Debian chromium: the browser tests will be skipped"

app: install
	$(PYTHON) app.py $(ARGS)

test: install-dev
	GRADIO_ANALYTICS_ENABLED=False $(PYTHON) -m pytest -q

test-fast:
	GRADIO_ANALYTICS_ENABLED=False $(PYTHON) -m pytest -q -x --ignore=tests/test_app_browser.py

bench:
	$(PYTHON) -m benchmarks.run --json benchmarks/results.json
	$(PYTHON) -m benchmarks.readme --results benchmarks/results.json --readme README.md

bench-quick:
	$(PYTHON) -m benchmarks.run --quick --json benchmarks/results-quick.json

eval:
	$(PYTHON) -m benchmarks.run --only quality --json benchmarks/quality.json

train-all:
	bash training/train_all.sh

screenshots:
	CNNIMG_TEST_WEIGHTS=weights CNNIMG_SCREENSHOTS=docs/screenshots $(PYTHON) -m pytest -q tests/test_app_browser.py
