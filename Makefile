# vida-factory verbs. `make demo` and `make test` set themselves up on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

TINY_MODEL := models/tiny-qwen2vl
MINI_RELEASE := data/vida-mini-release
MINI_IMAGES ?= 200

.PHONY: setup test test-fast bench-score clean tiny-model mini-data train export

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

$(TINY_MODEL)/config.json: | setup
	$(PY) -m vida_eval tiny-model $(TINY_MODEL)

tiny-model: $(TINY_MODEL)/config.json

$(MINI_RELEASE)/train/train_metadata.json: | setup
	$(PY) -m vida_eval data synth $(MINI_RELEASE) --images $(MINI_IMAGES) --seed 0

data/vida_mini/vida_combined.jsonl: $(MINI_RELEASE)/train/train_metadata.json
	$(PY) -m vida_eval data prepare --release $(MINI_RELEASE) --out data/vida_mini

mini-data: data/vida_mini/vida_combined.jsonl

# LoRA SFT of the tiny model on the synthetic mini-ViDA (CPU).
train: tiny-model mini-data
	$(VENV)/bin/llamafactory-cli train configs/tiny_lora.yaml

export: setup
	$(VENV)/bin/llamafactory-cli export configs/tiny_merge.yaml

clean:
	rm -rf runs build *.egg-info
