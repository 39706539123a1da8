"""Where things live in a ViDA release and in the prepared data folder."""

from __future__ import annotations

from pathlib import Path

# Registered dataset name -> (subtask folder prefix, file name) in train/ViDA-qwen2/.
TRAIN_SUBSETS = {
    "vida_d_assess": ("ViDA-D", "assess.jsonl"),
    "vida_d_brief_assess": ("ViDA-D", "brief_assess.jsonl"),
    "vida_d_dist_assess": ("ViDA-D", "dist_assess.jsonl"),
    "vida_g_dist_detect": ("ViDA-G", "dist_detect.jsonl"),
    "vida_g_ref_grounding": ("ViDA-G", "ref-grounding.jsonl"),
    "vida_g_reg_perception": ("ViDA-G", "reg-perception.jsonl"),
    "vida_p_mcq": ("ViDA-P", "mcq.jsonl"),
    "vida_p_qa": ("ViDA-P", "qa.jsonl"),
    "vida_p_score": ("ViDA-P", "score.jsonl"),
}
# The folder names of the public release carry a suffix.
SUBTASK_FOLDERS = {
    "ViDA-D": "ViDA-D(reasoning quality description)",
    "ViDA-G": "ViDA-G(fine-grained quality grounding)",
    "ViDA-P": "ViDA-P(detailed quality perception)",
}
COMBINED = "combined.json"
BENCH_RELEASE = ("mcq.json", "reg-p_ques.json", "benchmark.json")
BENCH_GT = ("mcq.json", "reg-p_bench.json", "bench_metadata.json")


def find_child(folder: Path, prefix: str) -> Path | None:
    """The child of *folder* named *prefix* or *prefix* followed by a suffix ('ViDA-D(...)')."""
    if (folder / prefix).is_dir():
        return folder / prefix
    if folder.is_dir():
        for child in sorted(folder.iterdir()):
            if child.is_dir() and child.name.startswith(prefix):
                return child
    return None


class Release:
    """Paths of a ViDA release folder (the real one or a synthetic one)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.train = self.root / "train"
        self.train_images = self.train / "images"
        self.qwen2 = find_child(self.train, "ViDA-qwen2") or self.train / "ViDA-qwen2"
        self.train_metadata = self.train / "train_metadata.json"
        self.val_images = self.root / "val" / "images"
        bench = find_child(self.root / "val", "ViDA-Bench") or self.root / "val" / "ViDA-Bench"
        self.bench_release = bench / "release"
        self.bench_gt = bench / "ground_truth"

    def subset_file(self, name: str) -> Path:
        prefix, file = TRAIN_SUBSETS[name]
        folder = find_child(self.qwen2, prefix) or self.qwen2 / SUBTASK_FOLDERS[prefix]
        return folder / file

    @property
    def combined(self) -> Path:
        return self.qwen2 / COMBINED
