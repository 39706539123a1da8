"""Several samples about one image in one row: the image once, each sample's own tokens after it.

A row is ``prefix + suffix_1 + ... + suffix_k``. The prefix is what every member has in common from its first
token (the system turn, the image, and whatever of the question they share); suffix_i is the rest of member i.
Each suffix token attends to the prefix and to the earlier tokens of its own suffix only (a 4-D mask) and keeps
the position it has in the member alone (each member's mrope positions are computed on the member itself). So
every member's logits are those of the member alone, and the loss (the sum over trained tokens divided by their
count) and its gradients equal those of the members batched one per row. The vision tower runs once per
distinct image of a batch instead of once per member, and the language model reads an image's tokens once per
row.

The prefix ends before any member's first trained token: the logit at a suffix's last token then meets the next
suffix's first token as its label, which is never trained, so no loss crosses from one member to another.
Members are grouped by their images and their tokens up to the last image token, so members with different
system prompts (which come before the image) go to different rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from llamafactory.data.collator import SFTDataCollatorWith4DAttentionMask
from llamafactory.extras.constants import IGNORE_INDEX


@dataclass
class Row:
    members: list[dict]
    prefix: int  # tokens shared from the start

    @property
    def length(self) -> int:
        return self.prefix + sum(len(m["input_ids"]) - self.prefix for m in self.members)


def common_prefix(seqs: list[list[int]]) -> int:
    """Length of the longest common prefix of *seqs*."""
    n = min(len(s) for s in seqs)
    first = np.asarray(seqs[0][:n])
    for s in seqs[1:]:
        diff = np.flatnonzero(first[:n] != np.asarray(s[:n]))
        if diff.size:
            n = int(diff[0])
    return n


def first_trained(labels: list[int]) -> int:
    trained = np.flatnonzero(np.asarray(labels) != IGNORE_INDEX)
    return int(trained[0]) if trained.size else len(labels)


def last_index(ids: list[int], token: int) -> int:
    hits = np.flatnonzero(np.asarray(ids) == token)
    return int(hits[-1]) if hits.size else -1


def plan_rows(features: list[dict], image_token: int, max_len: int = 0) -> list[Row]:
    """Rows for *features*: members sharing images and the tokens through their last image token share a prefix;
    a row holds at most *max_len* tokens (0: no limit), a member alone is a row of its own."""
    groups: dict[tuple, list[dict]] = {}
    for f in features:
        last = last_index(f["input_ids"], image_token)
        key = (tuple(map(str, f.get("images") or ())), tuple(f["input_ids"][: last + 1])) if last >= 0 else (id(f),)
        groups.setdefault(key, []).append(f)
    rows = []
    for members in groups.values():
        prefix = min(common_prefix([m["input_ids"] for m in members]),
                     *(first_trained(m["labels"]) - 1 for m in members))
        if len(members) == 1 or prefix <= last_index(members[0]["input_ids"], image_token):
            rows += [Row([m], 0) for m in members]
            continue
        row = Row([], prefix)
        for m in members:
            if row.members and max_len and row.length + len(m["input_ids"]) - prefix > max_len:
                rows.append(row)
                row = Row([], prefix)
            row.members.append(m)
        rows.append(row)
    return rows


def row_mask(segments: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The additive 4-D mask of rows whose tokens are labelled by *segments* (rows x length): 0 for the shared
    prefix, i >= 1 for member i's suffix, -1 for padding. A token sees the earlier prefix and the earlier tokens of
    its own segment; padding sees itself."""
    length, device = segments.shape[-1], segments.device
    q, k = segments[:, :, None], segments[:, None, :]
    causal = torch.tril(torch.ones(length, length, dtype=torch.bool, device=device))
    allowed = causal & (q >= 0) & ((k == 0) | (k == q))
    allowed |= torch.eye(length, dtype=torch.bool, device=device) & (q < 0)
    zero = torch.tensor(0, dtype=dtype, device=device)
    blocked = torch.tensor(torch.finfo(dtype).min, dtype=dtype, device=device)
    return torch.where(allowed, zero, blocked)[:, None]


# Families whose image features are the vision tower's output alone (Qwen3-VL also hands deepstack features to
# the language model's layers), so that an image encoded once can be placed into several rows.
ENCODE_ONCE = ("qwen2_vl", "qwen2_5_vl")


def distinct_images(images: list[list]) -> tuple[list, torch.Tensor | None]:
    """The distinct images of the rows' *images* (one list per row), in order of first appearance, and
    ``row_images`` (rows x images per row; -1 pads) indexing them; None when no image repeats."""
    first: dict[str, int] = {}
    distinct = []
    for x in (x for imgs in images for x in imgs):
        if str(x) not in first:
            first[str(x)] = len(distinct)
            distinct.append(x)
    if len(distinct) == sum(len(imgs) for imgs in images):
        return distinct, None
    width = max(len(imgs) for imgs in images)
    return distinct, torch.tensor([[first[str(x)] for x in imgs] + [-1] * (width - len(imgs)) for imgs in images])


def encode_images_once(model, inputs: dict) -> dict:
    """Inputs with ``row_images`` (``distinct_images``: the batch's pixels hold each distinct image once) as the
    model takes them: each distinct image through the vision tower once, its features placed at the image tokens
    of every row that holds it, given as ``inputs_embeds``. Gradients of all those rows meet in the one encoding,
    as they would sum over copies."""
    row_images = inputs.pop("row_images", None)
    if row_images is None:
        return inputs
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    vlm = base.model
    ids, grid = inputs.pop("input_ids"), inputs.pop("image_grid_thw")
    features = vlm.get_image_features(inputs.pop("pixel_values"), grid).pooler_output
    embeds = vlm.get_input_embeddings()(ids)
    rows = []
    for r in range(ids.shape[0]):
        mine = torch.cat([features[j] for j in row_images[r].tolist() if j >= 0]).to(embeds.dtype)
        at = (ids[r] == base.config.image_token_id)[:, None].expand_as(embeds[r])
        rows.append(embeds[r].masked_scatter(at, mine))
    inputs["inputs_embeds"] = torch.stack(rows)
    return inputs


def model_inputs(batch: dict, dtype: torch.dtype) -> dict:
    """The collated *batch* as the model takes it: the rows' segments become their 4-D mask, built where the
    segments are (on the GPU, after the trainer moved the batch: a float mask of 10K x 10K tokens is 200 MB a
    row, too much to hand from the data-loader workers through shared memory)."""
    segments = batch.pop("row_segments", None)
    if segments is not None:
        batch["attention_mask"] = row_mask(segments, dtype)
    return batch


@dataclass
class SharedImageCollator(SFTDataCollatorWith4DAttentionMask):
    """LLaMA-Factory's SFT collator, with members about one image packed into shared-prefix rows (module doc);
    the batch carries each row's segments (``row_mask``), which ``model_inputs`` turns into the 4-D mask on the
    trainer's device, and for ENCODE_ONCE families each distinct image once (``encode_images_once`` runs the
    vision tower inside the training step). Batches it cannot pack exactly (no image, videos or audio, packed
    sequences, a model without mrope positions) go through LLaMA-Factory's own collation unchanged."""

    max_row_len: int = 0

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        if self.get_rope_func is None or any(not f.get("images") or f.get("videos") or f.get("audios")
                                             or f.get("packing_params") for f in features):
            return super().__call__(features)
        image_token = self.tokenizer.convert_tokens_to_ids(self.template.mm_plugin.image_token)
        rows = plan_rows(features, image_token, self.max_row_len)
        images = [list(r.members[0]["images"]) for r in rows]
        row_ids, row_labels, row_segments = [], [], []
        for r in rows:
            ids, labels, segments = list(r.members[0]["input_ids"][: r.prefix]), [IGNORE_INDEX] * r.prefix, [0] * r.prefix
            for i, m in enumerate(r.members, 1):
                ids += m["input_ids"][r.prefix:]
                labels += m["labels"][r.prefix:]
                segments += [i] * (len(m["input_ids"]) - r.prefix)
            row_ids.append(ids), row_labels.append(labels), row_segments.append(segments)
        row_images = None
        if getattr(getattr(self.model, "config", None), "model_type", None) in ENCODE_ONCE:
            distinct, row_images = distinct_images(images)
        if row_images is None:
            mm_inputs = self.template.mm_plugin.get_mm_inputs(
                [x for imgs in images for x in imgs], [], [], [len(x) for x in images], [0] * len(rows),
                [0] * len(rows), row_ids, self.processor)
        else:  # each distinct image processed once, listed with the first row that holds it
            holder = [next(r for r in range(len(rows)) if j in row_images[r].tolist()) for j in range(len(distinct))]
            mm_inputs = self.template.mm_plugin.get_mm_inputs(
                distinct, [], [], [1] * len(distinct), [0] * len(distinct), [0] * len(distinct),
                [row_ids[r] for r in holder], self.processor)
            mm_inputs["row_images"] = row_images
        mm_inputs.pop("mm_token_type_ids", None)  # positions are given; the model does not need them

        length = max(len(x) for x in row_ids)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([x + [pad] * (length - len(x)) for x in row_ids])
        labels = torch.tensor([x + [self.label_pad_token_id] * (length - len(x)) for x in row_labels])
        segments = torch.tensor([x + [-1] * (length - len(x)) for x in row_segments])
        positions = torch.zeros(3, len(rows), length, dtype=torch.long)
        grids = mm_inputs.get("image_grid_thw")
        start = 0
        for r_i, r in enumerate(rows):
            if row_images is not None:
                grid = grids[row_images[r_i][row_images[r_i] >= 0]]
            else:
                grid = grids[start:start + len(images[r_i])] if grids is not None else None
                start += len(images[r_i])
            at = r.prefix
            for k, m in enumerate(r.members):
                alone = self._positions_alone(m["input_ids"], grid)
                if k == 0:
                    positions[:, r_i, : r.prefix] = alone[:, : r.prefix]
                n = len(m["input_ids"]) - r.prefix
                positions[:, r_i, at: at + n] = alone[:, r.prefix:]
                at += n
        batch = {"input_ids": input_ids, "labels": labels, "row_segments": segments,  # model_inputs: the mask
                 # LLaMA-Factory's layout for transformers 5: the text positions first, then the three mrope rows
                 "position_ids": torch.cat([positions[:1], positions], dim=0), **mm_inputs}
        for key, value in batch.items():
            if torch.is_tensor(value) and torch.is_floating_point(value):
                batch[key] = value.to(self.compute_dtype)
        return batch

    def _positions_alone(self, ids: list[int], grid) -> torch.Tensor:
        """Member *ids*' mrope positions (3 x length) as LLaMA-Factory computes them for the member alone."""
        feats = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}
        self._compute_rope_position_ids(feats, {"image_grid_thw": grid})
        return feats["position_ids"][:, 0]


class ImageGroupedSampler(torch.utils.data.Sampler):
    """A fresh order each epoch in which the samples about one image come together, and within them the samples
    that begin with the same tokens (one system prompt): consecutive batches then share images and prefixes.
    Images, and the order inside each group, are shuffled with the seed and the epoch."""

    def __init__(self, dataset, seed: int = 0, head: int = 32):
        self.seed, self.epoch = seed, 0
        images = [tuple(map(str, x or ())) for x in dataset["images"]]
        heads = _head_keys(dataset, head)
        by_image: dict[tuple, dict[int, list[int]]] = {}
        for i, (img, h) in enumerate(zip(images, heads)):
            by_image.setdefault(img, {}).setdefault(int(h), []).append(i)
        self.groups = [[np.asarray(v) for v in subs.values()] for subs in by_image.values()]
        self.n = len(images)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        for g in rng.permutation(len(self.groups)):
            subs = self.groups[g]
            for s in rng.permutation(len(subs)):
                yield from (int(i) for i in rng.permutation(subs[s]))


def _head_keys(dataset, head: int) -> np.ndarray:
    """A hash of each row's first *head* tokens, read from the Arrow column without building Python lists."""
    import pyarrow.compute as pc

    table = getattr(dataset, "data", None)
    if table is None:
        return np.zeros(len(dataset), dtype=np.int64)
    col = pc.list_slice(table.column("input_ids").combine_chunks(), 0, head)
    offsets = col.offsets.to_numpy()
    values = col.flatten().to_numpy().astype(np.int64)
    place = np.arange(values.size) - np.repeat(offsets[:-1], np.diff(offsets))
    weights = np.random.default_rng(0).integers(1, 2**31, head, dtype=np.int64)
    keys = np.zeros(len(offsets) - 1, dtype=np.int64)
    np.add.at(keys, np.repeat(np.arange(len(offsets) - 1), np.diff(offsets)), values * weights[place])
    indices = getattr(dataset, "_indices", None)  # a selection (max_samples) maps rows onto the table
    if indices is not None:
        keys = keys[indices.column(0).to_numpy()]
    return keys
