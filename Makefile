# vida-factory verbs. `make demo` and `make test` set themselves up on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup test test-fast bench-score clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -e '.[train,test]'
	touch $@

setup: $(VENV)/.installed

# pytest exits 5 when it collects no test: not a failure of the code.
test: setup
	$(PY) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; fi; exit $$rc

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

bench-score: setup
	$(PY) bench/score_speed.py

clean:
	rm -rf runs build *.egg-info
