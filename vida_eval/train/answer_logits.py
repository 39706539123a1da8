"""Logits only where the loss reads them: the ``answer_logits_only: true`` key of ``vida-eval train``.

A causal LM's training forward projects every position onto the vocabulary, then the loss ignores every position
whose next token is not supervised (the system prompt, the image, the question: labels -100). For a ViDA sample
that is almost all of them: a 7B sample at the bench's mean size has about 2,250 positions and 10-30 answer
tokens, and Qwen2's vocabulary is 151,936 wide, so the projection of the unsupervised positions costs
2 x 2,250 x 151,936 x 3,584 FLOP forward (about 2.4 TFLOP, twice that backward) and a float32 logits tensor of
1.4 GB that the loss then throws away. On the tiny CPU model, whose layers are small next to its vocabulary, it
is nearly the whole step.

With the key, the model's forward projects only the positions whose next token is supervised (a pre-hook on the
head hands it those positions of every row, as one row), and hands the loss function the labels of those positions
(its ``shift_labels``); the training output's logits are that one row. The loss is the same function over the
same terms: sum over supervised positions of -log p(next token), divided by their count (or by
``num_items_in_batch`` under gradient accumulation), so loss and gradients equal the stock forward's up to the
order of floating-point sums (``tests/test_shared_image.py``). Evaluation and generation are untouched: the
wrapper acts only on a training forward with labels.
"""

from __future__ import annotations

import contextlib
import functools

IGNORE_INDEX = -100  # the transformers loss's default ignore_index, which LLaMA-Factory's labels use


def supervised_tokens(labels):
    """(mask, their next-token labels): mask[b, p] where row b's label at p + 1 is not ignored, and those labels
    in row-major order."""
    import torch

    shifted = torch.nn.functional.pad(labels, (0, 1), value=IGNORE_INDEX)[:, 1:]
    mask = shifted != IGNORE_INDEX
    return mask, shifted[mask]


def answer_logits_forward(forward):
    """*forward* (a transformers ``...ForConditionalGeneration.forward``) computing logits only at supervised
    positions when it trains with labels (module doc)."""

    @functools.wraps(forward)
    def wrapped(self, *args, labels=None, logits_to_keep=0, **kwargs):
        if labels is None or not self.training or args or not isinstance(logits_to_keep, int) or logits_to_keep:
            return forward(self, *args, labels=labels, logits_to_keep=logits_to_keep, **kwargs)
        mask, shift_labels = supervised_tokens(labels)
        # The head sees the supervised positions of every row as one row of N tokens: the forward's own call of
        # it, so its hooks (ZeRO-3 gathering, a tied embedding) stay as they are.
        hook = self.lm_head.register_forward_pre_hook(
            lambda _module, inputs: (inputs[0][mask.to(inputs[0].device)].unsqueeze(0), *inputs[1:]))
        try:
            out = forward(self, labels=None, **kwargs)
        finally:
            hook.remove()
        out.loss = self.loss_function(logits=out.logits, labels=None, shift_labels=shift_labels.unsqueeze(0),
                                      vocab_size=self.config.get_text_config().vocab_size, **kwargs)
        return out

    wrapped.answer_logits_only = True
    return wrapped


def model_classes() -> list:
    """The transformers classes of every model family we train."""
    import transformers

    from ..models.families import FAMILIES

    return [getattr(transformers, f.architecture) for f in FAMILIES.values() if hasattr(transformers, f.architecture)]


@contextlib.contextmanager
def answer_logits_only():
    """Every family's training forward with logits at supervised positions only, for the block."""
    saved = [(cls, cls.forward) for cls in model_classes()]
    for cls, forward in saved:
        if not getattr(forward, "answer_logits_only", False):
            cls.forward = answer_logits_forward(forward)
    try:
        yield
    finally:
        for cls, forward in saved:
            cls.forward = forward
