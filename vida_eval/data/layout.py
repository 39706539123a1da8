"""Where things live in a ViDA release and in the prepared data folder."""

from __future__ import annotations

from dataclasses import dataclass
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
# What the records of each bench file must hold: the tasks build their requests from these fields.
BENCH_RELEASE_FIELDS = {"mcq.json": ("id", "image", "question", "candidates"),
                        "reg-p_ques.json": ("id", "image", "question"), "benchmark.json": ("id", "image")}
BENCH_GT_FIELDS = {"mcq.json": ("id", "correct_ans"), "reg-p_bench.json": ("id", "image", "distortions"),
                   "bench_metadata.json": ("id", "image", "mos", "level", "distortions")}


def find_children(folder: Path, prefix: str) -> list[Path]:
    """The folders in *folder* named *prefix* or *prefix* followed by a suffix ('ViDA-D(...)'), sorted."""
    if not folder.is_dir():
        return []
    return sorted(c for c in folder.iterdir() if c.is_dir() and c.name.startswith(prefix))


def find_child(folder: Path, prefix: str) -> Path | None:
    """The folder *prefix* names in *folder* (the exact name first), or None; ``Release.layout_problems``
    reports a prefix that several folders match."""
    if (folder / prefix).is_dir():
        return folder / prefix
    found = find_children(folder, prefix)
    return found[0] if found else None


@dataclass
class TrainingFile:
    """A registered dataset's file in a release, and why it cannot be read (None when it can)."""

    name: str
    path: Path
    problem: str | None = None


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

    def holds(self, path: str | Path) -> bool:
        """True when *path* (resolved) is the release folder or inside it: no place for what is made from it."""
        return Path(path).resolve().is_relative_to(self.root.resolve())

    def layout_problems(self) -> list[str]:
        """Folders that several names match (a plain ``ViDA-P/`` beside ``ViDA-P(detailed quality perception)/``):
        which one holds the data cannot be told, and reading either would drop the other's records."""
        problems = []
        for folder, prefix in [(self.train, "ViDA-qwen2"), *((self.qwen2, p) for p in SUBTASK_FOLDERS)]:
            found = find_children(folder, prefix)
            if len(found) > 1:
                problems.append(f"{folder}: {len(found)} folders for {prefix} ({', '.join(repr(f.name) for f in found)}); "
                                "keep one")
        return problems

    def training_files(self) -> list[TrainingFile]:
        """Every registered dataset's file, with what is wrong with it: missing, or not a file."""
        files = [TrainingFile(name, self.subset_file(name)) for name in TRAIN_SUBSETS]
        files.append(TrainingFile("vida_combined", self.combined))
        for f in files:
            if f.path.is_dir():
                f.problem = f"{f.path} is a folder, not a file"
            elif not f.path.is_file():
                f.problem = f"{f.path} is missing"
        return files
