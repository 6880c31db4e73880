"""Tiny labelled sets (a few hundred rows): a validation split big enough to rank on, and no 60 epochs.

A recipe written for 10,000 rows cuts 10 % for validation and trains a fixed number of steps. On 300
rows that is a 30-row validation split (one row is 3.3 points: the search ranks noise) and 600
fine-tuning steps of batch 32 over 240 rows, 80 epochs (the model memorises). So, when
``prune.adapt_small_data`` is on (the default), :func:`adapt_to_size`:

* raises ``data.validation_ratio`` until validation has ``MIN_VALIDATION_ROWS`` rows (at most
  ``MAX_VALIDATION_RATIO`` of the data; the test split is cut first and does not move);
* caps ``prune.finetune_steps``, ``train.steps`` and the baselines' steps at ``MAX_EPOCHS`` passes
  over the training rows;

and says so in one warning line per change. The config's hash is the user's, so a re-run is the same.
"""

from __future__ import annotations

import math

from elastic_lm.config import Config

MIN_VALIDATION_ROWS = 100
MAX_VALIDATION_RATIO = 0.25
MAX_EPOCHS = 20


def adapt_to_size(config: Config, rows: int) -> tuple[Config, list[str]]:
    """A copy of ``config`` fitted to ``rows`` labelled rows, and what changed (one line each)."""
    out = config.model_copy(deep=True)
    notes: list[str] = []
    d = out.data
    if rows * d.validation_ratio < MIN_VALIDATION_ROWS:
        ratio = min(MAX_VALIDATION_RATIO, MIN_VALIDATION_ROWS / max(rows, 1))
        if ratio > d.validation_ratio:
            notes.append(
                f"data has {rows} rows: data.validation_ratio {d.validation_ratio:g} -> {ratio:.3g} "
                f"({round(rows * d.validation_ratio)} -> {round(rows * ratio)} validation rows) so the "
                "search ranks members on more than noise"
            )
            d.validation_ratio = ratio
    train_rows = max(1, round(rows * (1 - d.validation_ratio - d.test_ratio)))
    batch = out.train.batch_size
    cap = MAX_EPOCHS * math.ceil(train_rows / batch)
    p, t = out.prune, out.train
    for name, value in (("prune.finetune_steps", p.finetune_steps), ("train.steps", t.steps)):
        if value > cap:
            notes.append(
                f"{name}={value} is {value * batch / train_rows:.0f} epochs of {train_rows} training rows: "
                f"capped at {cap} ({MAX_EPOCHS} epochs)"
            )
    if p.finetune_steps > cap:
        p.finetune_steps = cap
    if t.steps > cap:
        t.steps = cap
        t.eval_every = min(t.eval_every, cap)
        t.checkpoint_every = min(t.checkpoint_every, cap)
    if p.baseline_steps is not None and p.baseline_steps > cap:
        notes.append(f"prune.baseline_steps={p.baseline_steps}: capped at {cap} ({MAX_EPOCHS} epochs)")
        p.baseline_steps = cap
    return out, notes


__all__ = ["MAX_EPOCHS", "MIN_VALIDATION_ROWS", "adapt_to_size"]
