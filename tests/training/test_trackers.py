"""The bottleneck trackers on scripted loss sequences, and against the authors' trackers."""

from __future__ import annotations

import dataclasses
import doctest
import json
import math

import numpy as np
import pytest

from rrae_fast.training import (
    AdaptiveTracker,
    Decision,
    FixedTracker,
    ParsimoniousTracker,
    Phase,
    _trackers,
    make_tracker,
)

D = Decision


def drive(tracker, losses, stage_starts=(), first_step=0):
    """Feeds the losses one by one; `start_stage` before the steps listed in `stage_starts`."""
    decisions = []
    for t, loss in enumerate(losses, start=first_step):
        if t in stage_starts:
            tracker.start_stage()
        decisions.append(tracker.update(loss))
    return decisions


def test_doctests():
    result = doctest.testmod(_trackers)
    assert result.attempted > 0 and result.failed == 0


# --- The loss window ---------------------------------------------------------------------------


def test_average_first_defined_on_call_window_plus_two():
    """The reference tests the zero-based step with `step > 20`: call 21 has no average yet."""
    tracker = FixedTracker(2)
    losses = [float(t) for t in range(1, 31)]
    averages = []
    for loss in losses:
        tracker.update(loss)
        averages.append(tracker.average)
    assert all(a == math.inf for a in averages[:21])
    assert averages[21] == pytest.approx(np.mean(losses[2:22]))  # call 22: the last 20 losses
    assert averages[29] == pytest.approx(np.mean(losses[10:30]))


def test_average_is_frozen_for_window_plus_one_steps_of_a_new_stage():
    tracker = FixedTracker(2, window=3)
    losses = [float(t) for t in range(1, 21)]
    averages = []
    for t, loss in enumerate(losses):
        if t == 10:
            tracker.start_stage()
        tracker.update(loss)
        averages.append(tracker.average)
    assert averages[3] == math.inf and averages[4] == pytest.approx(np.mean(losses[2:5]))
    assert averages[10:14] == [averages[9]] * 4  # stage calls 1..4 keep the old average
    assert averages[14] == pytest.approx(np.mean(losses[12:15]))  # stage call 5 = window + 2


def test_fixed_tracker_never_changes():
    decisions = drive(FixedTracker(3), [1.0, math.nan, 0.0, 5.0] * 10)
    assert decisions == [D(3)] * 40
    assert make_tracker("fixed", k=3).phase is Phase.FIXED


# --- AdaptiveTracker ----------------------------------------------------------------------------
# With `window=2` the average of call t >= 4 is (loss_{t-1} + loss_t) / 2, so every step's
# relative change and "worse" test can be read off two consecutive losses.


def test_init_ends_after_patience_init_stagnating_steps_counted_cumulatively():
    tracker = AdaptiveTracker(4, patience_init=3, window=2)
    # stagnating at calls 4, 6 and 8; the jumps at calls 5 and 7 must not reset the count
    losses = [1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 1.0, 1.0]
    phases = []
    for loss in losses:
        tracker.update(loss)
        phases.append(tracker.phase)
    assert phases == [Phase.INIT] * 7 + [Phase.SEARCH]
    # the target is the average at that moment (1.0): equal does not beat it, below does
    assert drive(tracker, [1.0, 0.99]) == [D(4), D(3, save=4)]


def test_init_ends_when_the_loss_beats_perf_loss_even_without_an_average():
    tracker = AdaptiveTracker(4, perf_loss=0.5, window=2)
    assert drive(tracker, [0.6, 0.4]) == [D(4), D(4)]
    assert tracker.phase is Phase.SEARCH
    assert drive(tracker, [0.45, 0.55]) == [D(3, save=4), D(3)]  # target 0.5, not the average


def test_perf_loss_wins_over_the_average_on_the_same_step():
    tracker = AdaptiveTracker(4, patience_init=1, perf_loss=0.5, eps_perc=10.0, window=2)
    drive(tracker, [0.6, 0.6, 0.6, 0.499])  # stagnates (avg 0.5495) and beats perf_loss
    assert tracker.phase is Phase.SEARCH
    assert drive(tracker, [0.52, 0.49]) == [D(4), D(3, save=4)]


def test_search_lowers_k_on_each_step_beating_the_target_and_saves_the_old_k():
    tracker = AdaptiveTracker(5, perf_loss=1.0, window=2)
    decisions = drive(tracker, [0.5, 0.5, 0.5, 2.0, 0.5])
    assert decisions == [D(5), D(4, save=5), D(3, save=4), D(3), D(2, save=3)]


def test_patience_conv_needs_consecutive_steps_beating_the_target():
    tracker = AdaptiveTracker(5, patience_conv=2, perf_loss=1.0, window=2)
    decisions = drive(tracker, [0.5, 0.5, 2.0, 0.5, 0.5])
    assert decisions == [D(5), D(5), D(5), D(5), D(4, save=5)]


def _too_small_k_sequence(**params):
    """Lowers k to 3, then 3 "not right" steps raise it back to 4 (with `patience_not_right=3`)."""
    tracker = AdaptiveTracker(5, perf_loss=1.0, patience_not_right=3, window=2, **params)
    losses = [
        0.5,  # ends INIT
        0.5,  # k 5 -> 4
        3.0,  # no average yet: not counted
        2.0,  # falling fast (rel 20 %, below the average): not counted
        3.0,  # worse than the average: 1
        3.0,  # stagnating: 2
        0.9,  # beats the target: k 4 -> 3, count back to 0
        2.0,  # worse: 1
        2.0,  # 2
        2.0,  # 3: k is too small
    ]
    return tracker, drive(tracker, losses)


def test_not_right_steps_raise_k_load_its_checkpoint_and_converge():
    tracker, decisions = _too_small_k_sequence()
    assert decisions[-1].note == (
        "k = 3 did not reach the target loss 1 (3 steps stagnated or worsened above it): "
        "k = 4 with the model saved at k = 4"
    )
    decisions[-1] = dataclasses.replace(decisions[-1], note=None)
    assert decisions == (
        [D(5), D(4, save=5)]
        + [D(4)] * 4
        + [D(3, save=4), D(3), D(3), D(4, load=4, reset_optimizer=True)]
    )
    assert tracker.phase is Phase.CONVERGED


def test_converged_stops_after_patience_stagnating_steps_and_stays_stopped():
    tracker, _ = _too_small_k_sequence()
    decisions = drive(tracker, [2.0, 4.0, 4.0, 4.0, 1.0])  # stagnating at calls 1, 3, 4
    assert decisions == [D(4), D(4), D(4), D(4, stop=True), D(4, stop=True)]
    assert tracker.phase is Phase.STOPPED


def test_converged_steps_stops_earlier():
    tracker, _ = _too_small_k_sequence(converged_steps=2)
    assert drive(tracker, [2.0, 4.0]) == [D(4), D(4, stop=True)]


def test_k_min_ends_the_search():
    tracker = AdaptiveTracker(4, perf_loss=1.0, k_min=2, window=2)
    decisions = drive(tracker, [0.5] * 5)
    assert decisions == [D(4), D(3, save=4), D(2, save=3), D(2), D(2)]
    assert tracker.phase is Phase.CONVERGED


def test_k_never_goes_below_one():
    tracker = AdaptiveTracker(3, perf_loss=1.0, window=2)  # k_min = 0
    decisions = drive(tracker, [0.5] * 5)
    assert decisions == [D(3), D(2, save=3), D(1, save=2), D(1), D(1)]
    assert tracker.phase is Phase.CONVERGED


def test_k_one_is_on_trial_like_any_other_k():
    """k = 1, reached by beating the target at k = 2, must beat the target too: if it stagnates
    instead, k goes back to 2 with the model saved there (the main job once kept an untried
    k = 1 here); when the steps run out while k = 1 is on trial, the same."""
    tracker = AdaptiveTracker(3, perf_loss=1.0, patience_not_right=2, window=2)
    decisions = drive(tracker, [0.5, 0.5, 0.5, 2.0, 2.0])
    assert [d.k for d in decisions] == [3, 2, 1, 1, 2]
    assert decisions[-1].load == 2 and tracker.phase is Phase.CONVERGED
    on_trial = AdaptiveTracker(3, perf_loss=1.0, patience_not_right=50, window=2)
    drive(on_trial, [0.5, 0.5, 0.5, 2.0])
    assert on_trial.k == 1 and on_trial.phase is Phase.SEARCH
    assert (on_trial.budget_spent().k, on_trial.k) == (2, 2)


def test_k_min_equal_to_k_init_skips_the_search():
    tracker = AdaptiveTracker(3, perf_loss=1.0, k_min=3, window=2)
    assert drive(tracker, [0.5, 0.5]) == [D(3), D(3)]
    assert tracker.phase is Phase.CONVERGED


def test_running_out_of_patience_at_k_init_keeps_k_init():
    tracker = AdaptiveTracker(3, perf_loss=1.0, patience_not_right=2, window=2)
    assert drive(tracker, [0.5, 2.0, 2.0, 2.0, 2.0]) == [D(3)] * 5
    assert tracker.phase is Phase.CONVERGED


def test_nan_loss_is_neither_improvement_nor_stagnation():
    tracker = AdaptiveTracker(4, perf_loss=1.0, patience_not_right=1, window=2)
    decisions = drive(tracker, [0.5, 0.5, math.nan, 2.0])
    assert decisions == [D(4), D(3, save=4), D(3), D(3)]  # the average was NaN at call 4
    assert math.isnan(tracker.average)
    (restore,) = drive(tracker, [2.0])
    assert dataclasses.replace(restore, note=None) == D(4, load=4, reset_optimizer=True)


# --- The paper's rules (SPEC §3.1, "paper-era differences") ---------------------------------


def _paper(k_init=5, **params):
    return AdaptiveTracker(k_init, perf_loss=1.0, rules="paper", window=2, **params)


def test_paper_rules_count_only_stagnation_as_not_right():
    """A loss above the average is "not right" under the current rules only."""
    losses = [0.5, 0.5, 3.0, 2.0, 4.0, 8.0]  # after the lowering: rel 20 %, 50 %, 75 %
    current = AdaptiveTracker(5, perf_loss=1.0, patience_not_right=2, window=2)
    paper = _paper(patience_not_right=2)
    assert drive(current, losses)[-1].load == 5  # the two rises counted
    assert [d.load for d in drive(paper, losses)] == [None] * 6
    assert paper.phase is Phase.SEARCH


def test_paper_rules_save_only_after_save_steps_calls_and_not_on_the_first_search_step():
    """k = 6 (3 calls, INIT's) is lowered on the first SEARCH step: not saved, as the first;
    k = 5 on its second call: not saved (fewer than `save_steps`); k = 4 on its third: saved;
    k = 3 on its second: not saved."""
    tracker = _paper(k_init=6, save_steps=3, patience_not_right=100)
    losses = [2.0, 2.0, 0.5, 0.5, 2.0, 0.5, 2.0, 2.0, 0.5, 2.0, 0.5]
    assert drive(tracker, losses) == [D(6)] * 3 + [
        D(5),
        D(5),
        D(4),
        D(4),
        D(4),
        D(3, save=4),
        D(3),
        D(2),
    ]


def test_paper_rules_restore_the_last_checkpoint_saved_and_keep_the_optimizer():
    tracker = _paper(k_init=6, save_steps=2, patience_not_right=2)
    decisions = drive(tracker, [0.5, 0.5, 2.0, 0.5, 0.5, 2.0, 2.0, 2.0])
    assert [d.save for d in decisions if d.save] == [5]  # k 5 held two calls; k 4 one
    failure = decisions[-1]
    assert failure.k == 4 and failure.load == 5 and not failure.reset_optimizer
    assert failure.note == (
        "k = 3 did not reach the target loss 1 (2 steps stagnated above it): k = 4 with the "
        "model last saved (at k = 5)"
    )
    assert tracker.phase is Phase.CONVERGED


def test_paper_rules_with_nothing_saved_go_on_with_the_model_in_use():
    tracker = _paper(patience_not_right=2)
    decisions = drive(tracker, [0.5, 0.5, 2.0, 2.0, 2.0])  # 5 -> 4 on the first step: no save
    assert decisions[-1].k == 5 and decisions[-1].load is None
    assert decisions[-1].note.endswith(": k = 5, no checkpoint to restore")


def test_paper_rules_budget_spent_restores_the_last_checkpoint_saved():
    tracker = _paper(k_init=6, save_steps=2, patience_not_right=50)
    drive(tracker, [0.5, 0.5, 2.0, 0.5, 0.5, 2.0])
    assert tracker.k == 3 and tracker.phase is Phase.SEARCH
    decision = tracker.budget_spent()
    assert (decision.k, decision.load, decision.reset_optimizer) == (4, 5, False)
    assert tracker.phase is Phase.CONVERGED


class PaperRules:
    """The paper's rules read from SPEC §3.1 and written out plainly, for a lockstep check:
    (k, saved tag, loaded tag) per step; no k floor (the curves below never need one)."""

    def __init__(self, k_init, perf_loss, patience_not_right, eps_0=1.0, eps_perc=5.0):
        self.k, self.perf_loss, self.patience = k_init, perf_loss, patience_not_right
        self.eps_0, self.eps_perc = eps_0, eps_perc
        self.phase, self.target, self.count = "init", math.nan, 0
        self.calls_at_k = self.search_calls = 0
        self.last_saved = None

    def __call__(self, loss, average):
        rel = 100 * abs(loss - average) / abs(average) if 0 < abs(average) < math.inf else math.nan
        self.calls_at_k += 1
        if self.phase == "init":
            if loss < self.perf_loss:
                self.phase, self.target, self.count = "search", self.perf_loss, 0
            return self.k, None, None
        if self.phase == "search":
            self.search_calls += 1
            if loss < self.target:
                self.count = 0
                save = self.search_calls > 1 and self.calls_at_k >= 20
                self.k -= 1
                self.calls_at_k = self.search_calls = 0
                if save:
                    self.last_saved = self.k + 1
                return self.k, self.k + 1 if save else None, None
            if rel < self.eps_0:
                self.count += 1
                if self.count == self.patience:
                    self.count, self.phase, self.calls_at_k = 0, "converged", 0
                    self.k += 1
                    return self.k, None, self.last_saved
        return self.k, None, None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_paper_rules_match_their_plain_reading_on_a_training_curve(seed):
    """Lowering on consecutive steps (no saves), then after a pause (saved), a failure that
    reloads a checkpoint of a k above the one restored."""
    loss_of = _training_loss(seed, k_true=3)
    ours = AdaptiveTracker(8, perf_loss=1.03, patience_not_right=60, rules="paper")
    plain = PaperRules(8, 1.03, 60)
    seen = []
    for t in range(1500):
        loss = loss_of(t, ours.k)
        d = ours.update(loss)
        expected = plain(loss, ours.average)
        assert (d.k, d.save, d.load) == expected, t
        seen.append(expected)
        if ours.phase is not Phase.SEARCH and ours.phase is not Phase.INIT:
            break
    assert any(s for _, s, _ in seen) and any(load for *_, load in seen)
    assert seen[-1][0] == 3


# --- A stage that runs out of steps -----------------------------------------------------------


def test_budget_spent_on_trial_restores_the_last_k_that_reached_the_target():
    """A k in SEARCH when the steps run out never beat the target: the model saved at k + 1
    (which did) is restored, and the note says so; after that there is nothing to restore."""
    tracker = AdaptiveTracker(5, perf_loss=1.0, patience_not_right=50, window=2)
    assert drive(tracker, [0.5, 0.5, 0.9, 2.0]) == [D(5), D(4, save=5), D(3, save=4), D(3)]
    decision = tracker.budget_spent()
    assert decision.note == (
        "the stage ended while k = 3 was on trial (it had not reached the target loss 1): "
        "k = 4 with the model saved at k = 4"
    )
    assert dataclasses.replace(decision, note=None) == D(4, load=4)
    assert tracker.k == 4 and tracker.phase is Phase.CONVERGED
    assert tracker.budget_spent() is None
    again = make_tracker("adaptive", **tracker.state_dict()["params"])
    again.load_state_dict(tracker.state_dict())
    assert again.k == 4 and again.budget_spent() is None


@pytest.mark.parametrize(
    "losses,phase",
    [
        ([2.0, 2.0], Phase.INIT),  # the target is not known yet: k_init stays
        ([0.5, 2.0], Phase.SEARCH),  # on trial at k_init: nothing above it was saved
        ([0.5, 0.5, 0.5, 0.5, 0.5], Phase.CONVERGED),  # k_min reached
    ],
)
def test_budget_spent_elsewhere_keeps_the_model(losses, phase):
    tracker = AdaptiveTracker(3, perf_loss=1.0, window=2)
    drive(tracker, losses)
    assert tracker.phase is phase
    k = tracker.k
    assert tracker.budget_spent() is None and tracker.k == k and tracker.phase is phase


def test_budget_spent_is_nothing_to_the_fixed_and_parsimonious_trackers():
    for tracker in (FixedTracker(2), ParsimoniousTracker(1, patience=3)):
        drive(tracker, [1.0] * 10)
        assert tracker.budget_spent() is None


def test_zero_average_never_stagnates():
    """A relative change against a zero average is undefined (0/0 in the reference)."""
    tracker = AdaptiveTracker(4, patience_init=1, window=2)
    drive(tracker, [0.0] * 10)
    assert tracker.phase is Phase.INIT


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"k_init": 8}, "could never end"),
        ({"k_init": 8, "perf_loss": 0.0}, "could never end"),
        ({"k_init": 0, "patience_init": 5}, "k_init"),
        ({"k_init": 2.0, "patience_init": 5}, "integer"),
        ({"k_init": True, "patience_init": 5}, "integer"),
        ({"k_init": 8, "patience_init": 0}, "patience_init"),
        ({"k_init": 8, "patience_init": 5, "patience_conv": 0}, "patience_conv"),
        ({"k_init": 8, "patience_init": 5, "patience_not_right": 0}, "patience_not_right"),
        ({"k_init": 8, "patience_init": 5, "eps_0": -1.0}, "eps_0"),
        ({"k_init": 8, "patience_init": 5, "eps_0": "1"}, "number"),
        ({"k_init": 8, "patience_init": 5, "eps_perc": math.nan}, "eps_perc"),
        ({"k_init": 8, "perf_loss": math.inf}, "perf_loss"),
        ({"k_init": 8, "patience_init": 5, "k_min": -1}, "k_min"),
        ({"k_init": 8, "patience_init": 5, "k_min": 9}, "k_min"),
        ({"k_init": 8, "patience_init": 5, "converged_steps": -1}, "converged_steps"),
        ({"k_init": 8, "patience_init": 5, "window": 0}, "window"),
    ],
)
def test_adaptive_rejects_bad_parameters(params, message):
    with pytest.raises(ValueError, match=message):
        AdaptiveTracker(**params)


# --- ParsimoniousTracker ------------------------------------------------------------------------


def test_pars_growth_counts_absolute_differences():
    small = ParsimoniousTracker(patience=1, window=2)  # |0.02 - 0.015| < 1 although rel = 33 %
    assert drive(small, [0.01, 0.01, 0.01, 0.02]) == [D(1)] * 3 + [D(2, save=1)]
    large = ParsimoniousTracker(patience=1, window=2)  # |510 - 505| >= 1 although rel < 1 %
    assert drive(large, [500.0, 500.0, 500.0, 510.0, 510.0]) == [D(1)] * 4 + [D(2, save=1)]


def test_pars_grows_until_a_mode_does_not_help_then_stops():
    tracker = ParsimoniousTracker(k_init=2, patience=2, window=2)
    losses = [10.0] * 5 + [5.0] * 3 + [4.98] * 3 + [6.0, 6.0, 6.0]
    decisions = drive(tracker, losses)
    assert decisions == (
        [D(2)] * 4
        + [D(3, save=2)]  # first growth: nothing to compare with
        + [D(3), D(3), D(4, save=3)]  # 5 is 50 % below 10: the mode helped
        + [D(4), D(3, save=4), D(3)]  # 4.98 is 0.4 % below 5: back to 3, converged
        + [D(3), D(3, stop=True), D(3, stop=True)]  # rel < 1 % at the 1st and 3rd step
    )
    assert tracker.phase is Phase.STOPPED


def test_pars_defaults_and_bad_parameters():
    tracker = ParsimoniousTracker(k_init=None)
    assert (tracker.k, tracker.patience, tracker.eps_perc) == (1, 5000, 1.0)
    assert tracker.phase is Phase.GROWTH
    with pytest.raises(ValueError, match="patience"):
        ParsimoniousTracker(patience=0)
    with pytest.raises(ValueError, match="k_init"):
        ParsimoniousTracker(k_init=0)


# --- Factory and state --------------------------------------------------------------------------


def test_make_tracker():
    assert isinstance(make_tracker("adaptive", k_init=8, patience_init=5), AdaptiveTracker)
    assert isinstance(make_tracker("parsimonious"), ParsimoniousTracker)
    assert make_tracker("fixed", k=2).k == 2
    with pytest.raises(ValueError, match=r"\['adaptive', 'fixed', 'parsimonious'\]"):
        make_tracker("pars")


def _curve(n, seed, nan_at=(), noise=0.03, jumps=True, scale=40):
    """A descent to a plateau (e-folding in `scale` steps) with noise and, if asked, jumps."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    losses = (0.2 + 5.0 * np.exp(-t / scale)) * (1 + noise * rng.standard_normal(n))
    if jumps:
        losses[rng.choice(n, n // 15, replace=False)] *= 3.0
    losses[list(nan_at)] = np.nan
    return [float(x) for x in losses]


def _gap_below(k_true, curve):
    """Losses `curve[t]` that get worse, one level per missing mode, when k < k_true."""
    return lambda t, k: curve[t] * (1 + max(k_true - k, 0))


def _halved_per_mode(k_true, curve):
    """Losses `curve[t]` halved by each mode up to k_true."""
    return lambda t, k: 10.0 * curve[t] * 0.5 ** min(k, k_true)


def drive_interactive(tracker, loss_of, steps, stage_starts=(), first_step=0):
    """`drive` with the loss of step t given by `loss_of(t, k)` at the tracker's current k."""
    decisions = []
    for t in range(first_step, steps):
        if t in stage_starts:
            tracker.start_stage()
        decisions.append(tracker.update(loss_of(t, tracker.k)))
    return decisions


NAN_STEPS = (30, 31, 120)  # NaN losses, to carry NaN in the window and the state


@pytest.mark.parametrize(
    ("kind", "params", "loss_of"),
    [
        (
            "adaptive",
            {"k_init": 9, "patience_init": 10, "patience_not_right": 12, "window": 6},
            _gap_below(4, _curve(300, seed=3, nan_at=NAN_STEPS)),
        ),
        (
            "adaptive",
            {
                "k_init": 9,
                "perf_loss": 0.4,
                "patience_conv": 2,
                "patience_not_right": 15,
                "eps_0": 5.0,
            },
            _gap_below(4, _curve(300, seed=3, nan_at=NAN_STEPS)),
        ),
        (
            "adaptive",
            {
                "k_init": 9,
                "perf_loss": 0.4,
                "patience_not_right": 10,
                "eps_0": 10.0,
                "rules": "paper",
                "save_steps": 4,
            },
            _gap_below(4, _curve(300, seed=3, nan_at=NAN_STEPS)),
        ),
        (
            "parsimonious",
            {"patience": 15, "window": 10},
            _halved_per_mode(4, _curve(300, 3, NAN_STEPS, noise=0.005, jumps=False, scale=10)),
        ),
    ],
)
def test_state_round_trip_through_json_resumes_exactly(kind, params, loss_of):
    stages = (100, 250)
    full = drive_interactive(make_tracker(kind, **params), loss_of, 300, stages)
    assert len({d.k for d in full}) > 2 and full[-1].stop  # the run crosses all phases
    for cut in range(0, 300, 7):
        first = make_tracker(kind, **params)
        head = drive_interactive(first, loss_of, cut, stages)
        state = json.loads(json.dumps(first.state_dict(), allow_nan=False))
        resumed = make_tracker(state["kind"], **state["params"])
        resumed.load_state_dict(state)
        tail = drive_interactive(resumed, loss_of, 300, stages, first_step=cut)
        assert head + tail == full, cut


def test_a_state_saved_before_the_paper_rules_existed_still_loads():
    tracker = AdaptiveTracker(5, perf_loss=1.0, patience_not_right=2, window=2)
    drive(tracker, [0.5, 0.5, 2.0])
    state = json.loads(json.dumps(tracker.state_dict()))
    for key in ("rules", "save_steps"):
        del state["params"][key]
    for key in ("calls_at_k", "search_calls", "last_saved"):
        del state[key]
    resumed = make_tracker("adaptive", **state["params"])
    resumed.load_state_dict(state)
    assert resumed.k == 4 and resumed.rules == "current"
    assert drive(resumed, [2.0] * 3) == drive(tracker, [2.0] * 3)


def test_fixed_state_round_trip():
    tracker = FixedTracker(3, window=4)
    drive(tracker, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    state = json.loads(json.dumps(tracker.state_dict(), allow_nan=False))
    resumed = make_tracker(state["kind"], **state["params"])
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state and resumed.average == tracker.average == 4.5


def test_state_keeps_non_finite_floats():
    tracker = AdaptiveTracker(4, patience_init=2, window=2)
    drive(tracker, [1.0, math.nan])
    state = json.loads(json.dumps(tracker.state_dict(), allow_nan=False))
    assert state["target"] == "nan" and state["average"] == "inf" and state["losses"][1] == "nan"


def test_load_state_dict_rejects_another_tracker():
    state = AdaptiveTracker(4, patience_init=2).state_dict()
    with pytest.raises(ValueError, match="belongs to"):
        AdaptiveTracker(4, patience_init=3).load_state_dict(state)
    with pytest.raises(ValueError, match="belongs to"):
        ParsimoniousTracker().load_state_dict(state)
    with pytest.raises(ValueError, match="not an encoded float"):
        AdaptiveTracker(4, patience_init=2).load_state_dict({**state, "target": "none"})
    with pytest.raises(ValueError, match="do not fit"):
        AdaptiveTracker(4, patience_init=2).load_state_dict({**state, "losses": [1.0] * 21})


# --- Against the authors' trackers --------------------------------------------------------------


class ReferenceLoop:
    """The authors' tracker fed as their `fit` feeds it.

    Per stage the step index restarts at 0, the circular loss buffer and the last average carry
    over, and the average (the sum of the slots over their number) is refreshed only when the
    zero-based step exceeds the window.
    A stop breaks the loop before anything is saved; a save is named after `k_max + 1`.
    """

    def __init__(self, tracker, window=_trackers.DEFAULT_WINDOW):
        self.tracker = tracker
        self.slots = [0.0] * window
        self.next_slot = 0
        self.step = 0
        self.average = math.inf
        self.params = tracker.init()

    def start_stage(self):
        self.step = 0

    def update(self, loss):
        window = len(self.slots)
        self.slots[self.next_slot] = loss
        self.next_slot = (self.next_slot + 1) % window
        if self.step > window:
            self.average = sum(self.slots) / window
        self.step += 1
        self.params = self.tracker(loss, self.average, self.params)
        k, stop = int(self.params["k_max"]), bool(self.params["stop_train"])
        save = k + 1 if self.params["save"] and not stop else None
        load = k if self.params.get("load") and not stop else None
        return Decision(k, save, load, load is not None, stop)


def lockstep(ours, reference, loss_of, steps, stage_length, compare_save_tags=True):
    """Runs both trackers on the losses `loss_of(t, k)` until a stop; both must decide alike."""
    decisions = []
    for t in range(steps):
        if t and t % stage_length == 0:
            ours.start_stage()
            reference.start_stage()
        loss = loss_of(t, ours.k)
        mine, theirs = ours.update(loss), reference.update(loss)
        mine = dataclasses.replace(mine, note=None)  # ours explains its restores; theirs does not
        if not compare_save_tags:  # the authors' `fit` names the checkpoint k_max + 1
            mine, theirs = ((d.k, d.save is not None, d.load, d.stop) for d in (mine, theirs))
        assert mine == theirs, (t, loss)
        decisions.append(mine)
        if ours.phase is Phase.STOPPED:
            break
    return decisions


@pytest.fixture(scope="module")
def reference_trackers():
    return pytest.importorskip("RRAEs.trackers")


def _training_loss(seed, k_true):
    """A training curve: descent then plateau, with a gap that opens when k < k_true."""
    rng = np.random.default_rng(seed)

    def loss_of(t, k):
        gap = 3.0 * max(k_true - k, 0)
        return float((1.0 + 9.0 * math.exp(-t / 60) + gap) * (1 + 0.02 * rng.standard_normal()))

    return loss_of


@pytest.mark.parametrize("seed", [0, 1])
def test_adaptive_matches_the_authors_on_a_training_curve(reference_trackers, seed):
    params = {"k_init": 8, "patience_init": 50, "patience_not_right": 100}
    reference = ReferenceLoop(reference_trackers.RRAE_gen_Tracker(**params))
    ours = AdaptiveTracker(**params)
    decisions = lockstep(ours, reference, _training_loss(seed, k_true=3), 3000, 400)
    assert [d.k for d in decisions if d.save or d.load] == [7, 6, 5, 4, 3, 2, 3]
    assert decisions[-1].stop


@pytest.mark.parametrize(
    "params",
    [
        {"k_init": 12, "patience_init": 30, "patience_not_right": 40, "k_min": 1},
        {
            "k_init": 12,
            "patience_init": 10,
            "patience_conv": 3,
            "patience_not_right": 25,
            "k_min": 2,
        },
        {"k_init": 12, "perf_loss": 0.35, "patience_not_right": 30, "eps_0": 4.0, "k_min": 1},
        {"k_init": 6, "patience_init": 10, "k_min": 3, "converged_steps": 150},
        {
            "k_init": 12,
            "patience_init": 20,
            "patience_not_right": 30,
            "converged_steps": 60,
            "k_min": 1,
        },
    ],
)
def test_adaptive_matches_the_authors_on_noisy_sequences(reference_trackers, params):
    loss_of = _gap_below(4, _curve(1500, seed=len(str(params))))
    reference = ReferenceLoop(reference_trackers.RRAE_gen_Tracker(**params))
    decisions = lockstep(AdaptiveTracker(**params), reference, loss_of, 1500, 500)
    assert decisions[-1].stop and any(d.save for d in decisions)


def test_pars_matches_the_authors(reference_trackers):
    rng = np.random.default_rng(7)

    def loss_of(t, k):  # each mode halves the loss, up to 3 modes
        return float(40.0 * 0.5 ** min(k, 3) * (1 + 0.001 * rng.standard_normal()))

    params = {"patience": 30, "eps_perc": 1.0}
    reference = ReferenceLoop(reference_trackers.RRAE_pars_Tracker(**params))
    ours = ParsimoniousTracker(**params)
    decisions = lockstep(ours, reference, loss_of, 2000, 300, compare_save_tags=False)
    assert [k for k, saved, _, _ in decisions if saved] == [2, 3, 4, 3]
    assert decisions[-1][3]  # stopped
