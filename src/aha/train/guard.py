"""The non-finite guard every trainer runs after an update: a skipped step (its loss or gradient
norm was not finite, so `aha.train.update` left weights and optimizer untouched) is a warning and
a `monitor/non_finite` flag; `limit` of them in a row end the run, its last checkpoint intact."""

from __future__ import annotations

from aha.train.checkpoint import DivergedError


def check_update(row: dict, state: dict, limit: int, events, last_checkpoint) -> DivergedError | None:
    """`row` holds the update's `skipped`, `loss`, `grad_norm` and `step`; `state["bad_steps"]`
    counts skipped steps in a row and is saved with checkpoints. Returns the error to raise once
    the row is logged, when the run must stop."""
    row["monitor/non_finite"] = float(row["skipped"] > 0)
    if not row["skipped"]:
        state["bad_steps"] = 0
        return None
    state["bad_steps"] = state.get("bad_steps", 0) + 1
    events.warning(f"step {row['step']}: loss or gradient not finite (loss {row['loss']}, grad norm "
                   f"{row['grad_norm']}); update skipped, weights unchanged ({state['bad_steps']} in a row)")
    if state["bad_steps"] < limit:
        return None
    return DivergedError(f"{state['bad_steps']} steps in a row with a non-finite loss or gradient (last: step "
                         f"{row['step']}); the last good checkpoint is {last_checkpoint or 'none'}. "
                         "Lower the learning rate or check the rewards/data.")
