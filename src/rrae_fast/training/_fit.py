"""The training loop: stages of shuffled mini-batches, a bottleneck tracker, checkpoints.

A run is a list of :class:`Stage` s (for RRAEs: the SVD stage, then decoder fine-tuning on the
projection). Each stage re-creates the optimizer, draws a fresh permutation of the training set
per epoch and drops the remainder batch; one "step" is one optimizer update on one batch. The
batch of step `t` of stage `s` depends only on `(seed, s, t)`, so a run resumed from a
checkpoint replays exactly the loss curve of an uninterrupted run with the same seed.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from tqdm.auto import tqdm

from ._basis import final_basis
from ._checkpoint import CheckpointDir
from ._mesh import as_auto, check_batch_size, place_batch, place_replicated, writes_files
from ._step import MODES, as_k, init_optimizer, make_step, param_dtype, stored_basis
from ._trackers import FixedTracker, Tracker


@dataclasses.dataclass(frozen=True)
class Stage:
    """One training stage.

    Attributes:
        steps: optimizer steps (batches) in the stage.
        learning_rate: the optimizer's learning rate, constant in the stage.
        batch_size: samples per batch.
        mode: `"train"` (the model's own latent operation; the tracker adapts `k`) or
            `"infer"` (decoder fine-tuning on the final-basis projection, encoder frozen).
    """

    steps: int
    learning_rate: float = 1e-3
    batch_size: int = 64
    mode: str = "train"

    def __post_init__(self):
        if self.steps < 0 or self.batch_size < 1 or not self.learning_rate > 0:
            raise ValueError("steps must be ≥ 0, batch_size ≥ 1 and learning_rate > 0")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")


class NonFiniteLoss(FloatingPointError):
    """Training stopped at the first NaN or infinite loss (the parameters are lost to it).

    Attributes:
        step: the step (counted from the run's start, 1-based) whose loss was not finite.
        history: the run's history up to and including that step.
    """

    def __init__(self, step: int, loss: float, history: History, saved: int | None):
        kept = (
            f"the last checkpoint (after {saved} steps) is kept"
            if saved
            else "no checkpoint was saved"
        )
        super().__init__(
            f"the loss became {loss} at step {step}: training diverged (a learning rate "
            f"too high for this model?); {kept}"
        )
        self.step, self.history = step, history


@dataclasses.dataclass
class History:
    """Per-step record of a run: batch loss, the `k` it used and its stage index, and the
    tracker's notes (restores) as `(step, sentence)`, the step counted from the run's start."""

    loss: list[float] = dataclasses.field(default_factory=list)
    k: list[int] = dataclasses.field(default_factory=list)
    stage: list[int] = dataclasses.field(default_factory=list)
    notes: list[tuple[int, str]] = dataclasses.field(default_factory=list)

    def append(self, loss: float, k: int, stage: int) -> None:
        self.loss.append(loss)
        self.k.append(k)
        self.stage.append(stage)

    def truncate(self, steps: int, notes: int) -> None:
        """Keeps the first `steps` steps and `notes` notes."""
        del self.loss[steps:], self.k[steps:], self.stage[steps:], self.notes[notes:]

    def to_dict(self) -> dict[str, list]:
        # NaN losses are stored as None so that the JSON stays standard.
        return {
            "loss": [None if math.isnan(v) else v for v in self.loss],
            "k": self.k,
            "stage": self.stage,
            "notes": [[step, text] for step, text in self.notes],
        }

    @classmethod
    def from_dict(cls, d: dict[str, list]) -> History:
        loss = [math.nan if v is None else float(v) for v in d["loss"]]
        notes = [(int(step), str(text)) for step, text in d.get("notes", [])]
        return cls(loss, list(d["k"]), list(d["stage"]), notes)


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` returns: the trained model, its history, the tracker and final `k`."""

    model: Any
    history: History
    tracker: Tracker
    k: int


@dataclasses.dataclass(frozen=True)
class _Consistent:
    """The run as it stood at the end of step `step` of a stage, every part of it in step."""

    step: int
    model: Any
    opt_state: Any
    k: int
    tracker: dict[str, Any]
    steps: int
    notes: int

    @classmethod
    def now(cls, step, model, opt_state, k, tracker, history) -> _Consistent:
        return cls(
            step, model, opt_state, k, tracker.state_dict(), len(history.loss), len(history.notes)
        )


def batch_indices(n: int, batch_size: int, seed: int, stage: int, step: int) -> np.ndarray:
    """The training-set indices of step `step` of stage `stage` (remainder batch dropped)."""
    per_epoch = n // batch_size
    if per_epoch == 0:
        raise ValueError(f"batch_size={batch_size} exceeds the {n} training samples")
    epoch, pos = divmod(step, per_epoch)
    perm = _permutation(n, seed, stage, epoch)
    return perm[pos * batch_size : (pos + 1) * batch_size]


@functools.lru_cache(maxsize=64)
def _permutation(n: int, seed: int, stage: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, stage, epoch]).permutation(n)


def _needs_basis(model) -> bool:
    return hasattr(model.bottleneck, "with_basis") and model.bottleneck.basis is None


def with_placeholder_basis(model, k: int):
    """`model` with a placeholder basis of width `k` (a skeleton to load a checkpoint into)."""
    length = model.bottleneck.latent_size
    return eqx.tree_at(
        lambda m: m.bottleneck,
        model,
        model.bottleneck.with_basis(jnp.zeros((length, k), param_dtype(model))),
    )


def _apply(decision, model, opt_state, opt, stage, tags, checkpoint, mesh):
    """Carry out a tracker's restore / optimizer reset / save decision."""
    if decision.load is not None:
        if decision.load in tags:
            model = tags[decision.load]
        else:  # a resumed run: the tagged model is on disk
            model = place_replicated(checkpoint.load_tag(decision.load, model), mesh)
    if decision.reset_optimizer:
        opt_state = place_replicated(init_optimizer(opt, model, stage.mode), mesh)
    if decision.save is not None:
        tags[decision.save] = model
        if checkpoint is not None and writes_files():
            checkpoint.save_tag(decision.save, model)
    return model, opt_state


def fit(
    model: Any,
    x: np.ndarray,
    stages: list[Stage],
    *,
    tracker: Tracker | None = None,
    seed: int = 0,
    optimizer: Callable[[float], optax.GradientTransformation] = optax.adabelief,
    basis_batch_size: int | None = None,
    checkpoint: CheckpointDir | None = None,
    checkpoint_every: int = 250,
    resume: bool = False,
    progress: bool = True,
    callback: Callable[[int, float, int], None] | None = None,
    mesh: Mesh | None = None,
) -> FitResult:
    """Train `model` on `x` through `stages`.

    Args:
        model: an :class:`~rrae_fast.models.Autoencoder`.
        x: training samples `[n, *sample_shape]` (already normalised; cast to the model's
            parameter dtype).
        stages: the stages to run in order.
        tracker: decides the bottleneck `k` after each step of a `"train"` stage (default: a
            fixed `k`, the bottleneck's `max_k` or 1). Its decisions to save / restore tagged
            models and to reset the optimizer are carried out here.
        seed: seeds the per-epoch permutations.
        optimizer: learning rate → Optax transformation, re-created at every stage and after a
            tracker's reset (default AdaBelief, as in the paper).
        basis_batch_size: batch size of the final-basis pass before an `"infer"` stage
            (default: the last stage's batch size, as in the authors' code).
        checkpoint: where to save (every `checkpoint_every` steps, at tracker events, at the
            end of each stage, and on Ctrl-C: the last step carried out in full, before the
            KeyboardInterrupt goes on); None saves nothing.
        checkpoint_every: steps between periodic checkpoints.
        resume: continue from the checkpoint in `checkpoint` if one exists.
        progress: show a tqdm progress bar with the loss and the current `k`.
        callback: called as `callback(global_step, loss, k)` after every step.
        mesh: train data-parallel over these devices (see :func:`make_step`): every batch is
            split by samples over the mesh (each stage's `batch_size` must be a multiple of
            its device count), the model and optimizer state are replicated, and the run is
            the one a single device would give for the same seed, up to float rounding. It
            works alike with one process per host under :func:`jax.distributed.initialize`:
            every process passes the same `x` and arguments; process 0 alone writes the
            checkpoints, which every process must be able to read to resume.

    Returns:
        A :class:`FitResult`.
    """
    if not stages:
        raise ValueError("at least one stage is needed")
    if mesh is not None:
        mesh = as_auto(mesh)
        for stage in stages:
            check_batch_size(stage.batch_size, mesh)
    x = np.asarray(x, param_dtype(model))
    if tracker is None:
        tracker = FixedTracker(getattr(model.bottleneck, "max_k", 1))
    if basis_batch_size is None:
        basis_batch_size = stages[-1].batch_size
    history, k = History(), tracker.k
    tags: dict[int, Any] = {}
    start_stage, start_step, opt_state = 0, 0, None
    if resume and checkpoint is not None and checkpoint.exists():
        state = checkpoint.read_state()
        start_stage, start_step, k = state["stage"], state["step"], state["k"]
        tracker.load_state_dict(state["tracker"])
        history = History.from_dict(state["history"])
        if state["basis_k"] is not None:
            model = with_placeholder_basis(model, state["basis_k"])
        opt_like = None  # a checkpoint at a stage boundary holds no optimizer state
        if start_step > 0:
            stage = stages[start_stage]
            opt_like = init_optimizer(optimizer(stage.learning_rate), model, stage.mode)
        model, opt_state = checkpoint.load(model, opt_like)
        opt_state = place_replicated(opt_state, mesh)
    model = place_replicated(model, mesh)

    total = sum(s.steps for s in stages)
    bar = tqdm(total=total, initial=len(history.loss), disable=not progress, unit="step")

    saved_steps = len(history.loss)  # steps in the newest checkpoint (or those resumed from)

    def save(stage_index: int, step: int) -> None:
        nonlocal saved_steps
        if checkpoint is None or not writes_files():
            return
        saved_steps = len(history.loss)
        basis = stored_basis(model)
        state = {
            "stage": stage_index,
            "step": step,
            "k": k,
            "tracker": tracker.state_dict(),
            "history": history.to_dict(),
            "basis_k": None if basis is None else int(basis.shape[1]),
        }
        checkpoint.save(len(history.loss), model, opt_state, state)

    for si in range(start_stage, len(stages)):
        stage = stages[si]
        if stage.mode == "infer" and _needs_basis(model):
            basis = final_basis(model, x, k, basis_batch_size, mesh=mesh)
            model = eqx.tree_at(lambda m: m.bottleneck, model, model.bottleneck.with_basis(basis))
        opt = optimizer(stage.learning_rate)
        step_fn = make_step(opt, stage.mode, mesh=mesh)
        if start_step == 0 and stage.mode == "train":
            tracker.start_stage()
        if opt_state is None:
            opt_state = place_replicated(init_optimizer(opt, model, stage.mode), mesh)
        safe = _Consistent.now(start_step, model, opt_state, k, tracker, history)
        try:
            for t in range(start_step, stage.steps):
                xb = x[batch_indices(len(x), stage.batch_size, seed, si, t)]
                xb = jnp.asarray(xb) if mesh is None else place_batch(xb, mesh)
                k_arg = (
                    as_k(k) if mesh is None else place_replicated(np.asarray(k, np.int32), mesh)
                )
                model, opt_state, loss = step_fn(model, opt_state, xb, k_arg)
                loss = float(loss)
                history.append(loss, k, si)
                if not math.isfinite(loss):
                    bar.close()
                    saved = checkpoint.read_state() if checkpoint and checkpoint.exists() else None
                    steps_saved = len(saved["history"]["loss"]) if saved else None
                    raise NonFiniteLoss(len(history.loss), loss, history, steps_saved)
                stop = False
                if stage.mode == "train":
                    decision = tracker.update(loss)
                    k, stop = decision.k, decision.stop
                    if decision.note:
                        history.notes.append((len(history.loss), decision.note))
                    if not stop:  # the tracker's order: restore, reset, save
                        model, opt_state = _apply(
                            decision, model, opt_state, opt, stage, tags, checkpoint, mesh
                        )
                bar.update(1)
                if progress and (t % 10 == 0 or stop):
                    bar.set_postfix(loss=f"{loss:.3g}", k=k, stage=si)
                if callback is not None:
                    callback(len(history.loss), loss, k)
                if stop:
                    bar.update(stage.steps - t - 1)  # the stage ends early
                    break
                if checkpoint is not None and len(history.loss) % checkpoint_every == 0:
                    save(si, t + 1)
                safe = _Consistent.now(t + 1, model, opt_state, k, tracker, history)
            else:
                last_train = not any(s.mode == "train" for s in stages[si + 1 :])
                if stage.mode == "train" and stage.steps > 0 and last_train:
                    last = tracker.budget_spent()  # the search's steps ran out before a stop
                    if last is not None:
                        k = last.k
                        if last.note:
                            history.notes.append((len(history.loss), last.note))
                        model, opt_state = _apply(
                            last, model, opt_state, opt, stage, tags, checkpoint, mesh
                        )
        except KeyboardInterrupt:
            # Back to the end of the last step carried out in full, saved if it is newer than
            # the last checkpoint, so that --resume goes on from there.
            bar.close()
            model, opt_state, k = safe.model, safe.opt_state, safe.k
            tracker.load_state_dict(safe.tracker)
            history.truncate(safe.steps, safe.notes)
            if checkpoint is not None and safe.steps > saved_steps:
                save(si, safe.step)
            raise
        start_step, opt_state = 0, None
        save(si + 1, 0)
    bar.close()
    return FitResult(model, history, tracker, k)
