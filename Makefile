# Quarry: `make demo` sets up a fresh machine and runs the demo; `make test` sets up and runs the tests.
# The venv is built once (stamp file) and rebuilt when pyproject.toml changes.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.quarry-installed

.PHONY: setup system-deps demo test clean

setup: $(STAMP)

# The browser tests drive Debian's Chromium (browser vendors' download sites are unreachable
# here, so `playwright install` cannot be used). Installed once, as root, when missing.
system-deps:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# torch/torchvision first, pinned: pip takes them from this machine kind's local disk
# (a floating torch pulls a multi-GB CUDA build from the index).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/quarry demo $(ARGS)

# two xdist workers, one module per unit of work, in the order tests/conftest.py gives them
test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder $(ARGS)

clean:
	rm -rf runs .pytest_cache
