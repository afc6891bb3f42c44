"""The training loop: stages, the tracker's decisions, exact resume from checkpoints."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rrae_fast.models import ModelConfig, build_model
from rrae_fast.training import (
    AdaptiveTracker,
    CheckpointDir,
    Decision,
    FixedTracker,
    Stage,
    fit,
)
from rrae_fast.training._fit import History, batch_indices


def _setup(kind="rrae", k=3):
    config = ModelConfig(kind=kind, latent_size=8, k=k, width=16, decoder_depth=2)
    model = build_model(config, (12,), key=jax.random.key(1))
    coef = jax.random.normal(jax.random.key(2), (40, 2))
    t = jnp.linspace(0, 1, 12)
    x = np.asarray(coef @ jnp.stack([jnp.sin(3 * t), jnp.cos(2 * t)]), np.float32)
    return model, x


STAGES = [Stage(12, 1e-2, 8), Stage(6, 1e-3, 8, mode="infer")]


def test_batches_are_a_function_of_seed_stage_and_step():
    a = batch_indices(20, 6, seed=3, stage=0, step=4)
    np.testing.assert_array_equal(a, batch_indices(20, 6, seed=3, stage=0, step=4))
    assert len(a) == 6
    epoch = np.concatenate([batch_indices(20, 6, 3, 0, t) for t in range(3)])
    assert len(set(epoch)) == 18  # one epoch: 3 full batches, the remainder dropped
    assert not np.array_equal(a, batch_indices(20, 6, seed=4, stage=0, step=4))
    with pytest.raises(ValueError, match="exceeds"):
        batch_indices(5, 6, 0, 0, 0)


def test_two_stage_fit_attaches_a_basis_and_records_history():
    model, x = _setup()
    result = fit(model, x, STAGES, tracker=FixedTracker(2), progress=True)
    assert len(result.history.loss) == 18
    assert result.history.stage == [0] * 12 + [1] * 6
    assert set(result.history.k) == {2}
    basis = result.model.bottleneck.basis
    assert basis.shape == (8, 2)
    np.testing.assert_allclose(basis.T @ basis, np.eye(2), atol=1e-5)
    assert result.k == 2


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    model, x = _setup("arrae", 5)

    def tracker():
        return AdaptiveTracker(k_init=5, perf_loss=1e9, patience_not_right=2, window=4)

    full = fit(model, x, STAGES, tracker=tracker(), progress=False)
    ckpt = CheckpointDir(tmp_path / "run")

    class Killed(Exception):
        pass

    total = len(full.history.loss)
    assert full.history.stage.count(0) < 12  # the tracker ended the first stage early

    def kill_near_end(step, loss, k):
        if step == total - 1:  # inside the fine-tuning stage, after its checkpoint
            raise Killed

    def run(**kwargs):
        return fit(
            model,
            x,
            STAGES,
            tracker=tracker(),
            checkpoint=ckpt,
            checkpoint_every=4,
            progress=False,
            **kwargs,
        )

    with pytest.raises(Killed):
        run(callback=kill_near_end)
    assert ckpt.read_state()["stage"] == 1  # the last checkpoint is inside the second stage
    resumed = run(resume=True)
    np.testing.assert_array_equal(resumed.history.loss, full.history.loss)
    assert resumed.history.k == full.history.k
    assert full.history.k[0] == 5 and min(full.history.k) < 5  # the tracker did act
    for a, b in zip(jax.tree.leaves(resumed.model), jax.tree.leaves(full.model)):
        np.testing.assert_array_equal(a, b)


class ScriptedTracker:
    """Decisions by step number: save tag 5 at step 3 (k → 4), restore it at step 8 (k → 5)."""

    def __init__(self):
        self.k, self.step = 5, 0

    def start_stage(self):
        pass

    def update(self, loss):
        self.step += 1
        if self.step == 3:
            self.k = 4
            return Decision(4, save=5)
        if self.step == 8:
            self.k = 5
            return Decision(5, load=5, reset_optimizer=True)
        return Decision(self.k, stop=self.step == 11)

    def budget_spent(self):
        return None

    def state_dict(self):
        return {"k": self.k, "step": self.step}

    def load_state_dict(self, d):
        self.k, self.step = d["k"], d["step"]


def test_restore_after_resume_reads_the_tagged_model_from_disk(tmp_path):
    model, x = _setup("arrae", 5)
    stages = [Stage(30, 1e-2, 8)]
    full = fit(model, x, stages, tracker=ScriptedTracker(), progress=False)
    assert full.history.k == [5, 5, 5, 4, 4, 4, 4, 4, 5, 5, 5]  # stopped after step 11
    ckpt = CheckpointDir(tmp_path / "run")

    def kill_at_6(step, loss, k):
        if step == 6:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        fit(
            model,
            x,
            stages,
            tracker=ScriptedTracker(),
            checkpoint=ckpt,
            checkpoint_every=2,
            progress=False,
            callback=kill_at_6,
        )
    assert (tmp_path / "run" / "tag-k5.eqx").is_file()
    resumed = fit(
        model, x, stages, tracker=ScriptedTracker(), checkpoint=ckpt, resume=True, progress=False
    )
    np.testing.assert_array_equal(resumed.history.loss, full.history.loss)
    for a, b in zip(jax.tree.leaves(resumed.model), jax.tree.leaves(full.model)):
        np.testing.assert_array_equal(a, b)


class OnTrialAtTheEnd(ScriptedTracker):
    """Lowers k to 4 at step 3 (saving tag 5); when the steps run out, restores tag 5."""

    def update(self, loss):
        self.step += 1
        if self.step == 3:
            self.k = 4
            return Decision(4, save=5)
        return Decision(self.k)

    def budget_spent(self):
        self.k = 5
        return Decision(5, load=5, note="restored the model saved at k = 5")


@pytest.mark.parametrize("interrupted", [False, True])
def test_a_stage_that_runs_out_of_steps_applies_the_trackers_restore(tmp_path, interrupted):
    """The tracker's `budget_spent` decision is carried out before fine-tuning: the model
    saved at step 3 goes on (its encoder, frozen from then on, is the one fine-tuned), the
    basis and the fine-tuning use the restored k, and the note is kept in the history, also
    across an interruption and resume."""
    model, x = _setup("arrae", 5)
    stages = [Stage(6, 1e-2, 8), Stage(3, 1e-3, 8, mode="infer")]
    at_tag = fit(model, x, [Stage(3, 1e-2, 8)], tracker=ScriptedTracker(), progress=False)
    ckpt = CheckpointDir(tmp_path / "run") if interrupted else None

    def kill_at_6(step, loss, k):  # before the checkpoint at 6: resumed from step 4
        if interrupted and step == 6:
            raise RuntimeError("killed")

    def run(**kwargs):
        return fit(model, x, stages, tracker=OnTrialAtTheEnd(), checkpoint=ckpt, **kwargs)

    if interrupted:
        with pytest.raises(RuntimeError, match="killed"):
            run(checkpoint_every=2, progress=False, callback=kill_at_6)
        result = run(resume=True, progress=False)
    else:
        result = run(progress=False)
    assert result.history.k == [5, 5, 5, 4, 4, 4, 5, 5, 5]
    assert result.history.notes == [(6, "restored the model saved at k = 5")]
    assert result.k == 5 and result.model.bottleneck.basis.shape == (8, 5)
    for a, b in zip(jax.tree.leaves(result.model.encoder), jax.tree.leaves(at_tag.model.encoder)):
        np.testing.assert_array_equal(a, b)


def test_only_the_last_training_stage_spends_the_budget():
    """A training stage followed by another (a new learning rate, say) does not end the search:
    the tracker hears of the spent budget once, after the last one."""
    model, x = _setup("arrae", 5)

    calls = []

    class Counting(OnTrialAtTheEnd):
        def budget_spent(self):
            calls.append(self.step)
            return super().budget_spent()

    stages = [Stage(4, 1e-2, 8), Stage(3, 1e-3, 8), Stage(2, 1e-3, 8, mode="infer")]
    result = fit(model, x, stages, tracker=Counting(), progress=False)
    assert calls == [7] and result.history.k == [5, 5, 5, 4, 4, 4, 4, 5, 5]


@pytest.mark.parametrize("where", ["callback", "tracker"])
def test_ctrl_c_saves_the_last_whole_step_and_resume_replays_it_exactly(tmp_path, where):
    """A KeyboardInterrupt anywhere in step 5 (here: in the callback, or in the tracker after
    the update and the history's entry) saves the run as it stood after step 4, long before
    the first periodic checkpoint, and the resumed run is the uninterrupted one."""
    model, x = _setup("arrae", 5)

    def tracker():
        return AdaptiveTracker(k_init=5, perf_loss=1e9, patience_not_right=2, window=4)

    full = fit(model, x, STAGES, tracker=tracker(), progress=False)
    ckpt = CheckpointDir(tmp_path / "run")
    first, kwargs = tracker(), {}
    if where == "callback":

        def ctrl_c(step, loss, k):
            if step == 5:
                raise KeyboardInterrupt

        kwargs["callback"] = ctrl_c
    else:
        real_update, calls = first.update, []

        def update(loss):
            calls.append(loss)
            if len(calls) == 5:
                raise KeyboardInterrupt
            return real_update(loss)

        first.update = update
    with pytest.raises(KeyboardInterrupt):
        fit(
            model,
            x,
            STAGES,
            tracker=first,
            checkpoint=ckpt,
            checkpoint_every=100,
            progress=False,
            **kwargs,
        )
    state = ckpt.read_state()
    assert len(state["history"]["loss"]) == 4 and state["step"] == 4
    assert state["tracker"]["stage_step"] == 4
    resumed = fit(
        model, x, STAGES, tracker=tracker(), checkpoint=ckpt, resume=True, progress=False
    )
    np.testing.assert_array_equal(resumed.history.loss, full.history.loss)
    assert resumed.history.k == full.history.k
    for a, b in zip(jax.tree.leaves(resumed.model), jax.tree.leaves(full.model)):
        np.testing.assert_array_equal(a, b)


def test_history_round_trip_keeps_nan():
    h = History([1.0, float("nan")], [3, 3], [0, 0], [(2, "a note")])
    back = History.from_dict(h.to_dict())
    assert back.loss[0] == 1.0 and np.isnan(back.loss[1]) and back.k == [3, 3]
    assert back.notes == [(2, "a note")]
    older = {key: value for key, value in h.to_dict().items() if key != "notes"}
    assert History.from_dict(older).notes == []  # histories saved before notes existed


def test_stage_validation():
    with pytest.raises(ValueError, match="steps"):
        Stage(-1)
    with pytest.raises(ValueError, match="mode"):
        Stage(1, mode="eval")
    model, x = _setup()
    with pytest.raises(ValueError, match="at least one stage"):
        fit(model, x, [])
