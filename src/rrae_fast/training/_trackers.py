"""Bottleneck trackers: how the latent rank `k` of an RRAE is chosen during training.

A tracker is a small state machine in plain Python. After every optimizer step the trainer hands it
the batch loss; the tracker keeps the moving average of recent losses and answers with a
`Decision`: the `k` to use from the next step on, and whether to save or restore a checkpoint,
re-create the optimizer state, or end the training stage.

The moving average follows the reference training loop exactly. With a window of `W` losses
(20 by default), the average `avg_t` is the mean of the last `W` losses, the current one included,
and it is first computed on call `W + 2` of a stage: the reference tests the zero-based step index
with `step > W`, so although the buffer is full after `W` losses, call `W + 1` still sees no
average. Until then `avg_t = +inf`, and every test that involves it is false. The relative change
is `rel_t = 100 * |loss_t - avg_t| / |avg_t|` percent.

A NaN loss never counts as an improvement, as stagnation, or as a worsening: every comparison
with NaN is false. It also makes the average NaN until it has left the window, so the tests that
use the average stay false for that long.

Examples:
    >>> tracker = make_tracker("adaptive", k_init=4, perf_loss=1.0)
    >>> tracker.update(0.5)  # beats perf_loss: the search for k starts
    Decision(k=4, save=None, load=None, reset_optimizer=False, stop=False, note=None)
    >>> tracker.update(0.5)  # beats it again: save the model as k=4, go on with k=3
    Decision(k=3, save=4, load=None, reset_optimizer=False, stop=False, note=None)
"""

from __future__ import annotations

import inspect
import math
import numbers
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

DEFAULT_WINDOW = 20  # losses in the moving average (the reference's `stagn_window`)
#: The adaptive tracker's rule sets: the reference now, and as it was for the paper's results.
RULES = ("current", "paper")

# The JSON form of the floats that plain JSON cannot hold (`json.dumps(allow_nan=False)`).
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


@dataclass(frozen=True)
class Decision:
    """What the trainer does after a step.

    The trainer applies the fields in this order: `stop` ends the stage at once (nothing is saved
    or loaded); otherwise it restores `load`, re-creates the optimizer state if `reset_optimizer`,
    and saves `save`.

    Attributes:
        k: the bottleneck rank to use from the next step on.
        save: save the current model as the checkpoint tagged with this rank, or None.
        load: replace the model with the checkpoint tagged with this rank, or None.
        reset_optimizer: re-create the optimizer state (after a `load`).
        stop: end the current training stage.
        note: a sentence for the run's record when the decision is one a user should hear of
            (a restore), or None.
    """

    k: int
    save: int | None = None
    load: int | None = None
    reset_optimizer: bool = False
    stop: bool = False
    note: str | None = None


class Phase(StrEnum):
    """Where a tracker stands, for progress display and for its state."""

    FIXED = "fixed"  # `FixedTracker`: k never changes
    INIT = "init"  # adaptive: training at k_init until the target loss is known
    SEARCH = "search"  # adaptive: lowering k while the loss still beats the target
    GROWTH = "growth"  # parsimonious: adding one mode each time the loss stagnates
    CONVERGED = "converged"  # k is final; waiting for the loss to stagnate
    STOPPED = "stopped"  # a stop was returned; every later update returns it again


class Tracker(ABC):
    """Base class: the loss window, the state round trip and the stop that stays.

    Subclasses set `kind` and implement `_step`, `_params`, `_state` and `_set_state`.
    """

    kind: ClassVar[str]
    #: Parameters added after states were first saved, with the value that matches the older
    #: behaviour: a saved state without them gets these.
    _added_params: ClassVar[dict[str, Any]] = {}

    def __init__(self, k: int, phase: Phase, window: int) -> None:
        self._k = k
        self._phase = phase
        self._window = _int_param("window", window, minimum=1)
        self._losses: deque[float] = deque(maxlen=self._window)
        self._stage_step = 0  # calls to `update` since the stage began
        self._average = math.inf

    @property
    def k(self) -> int:
        """The bottleneck rank in use."""
        return self._k

    @property
    def phase(self) -> Phase:
        """The current phase."""
        return self._phase

    @property
    def average(self) -> float:
        """The moving average of the last losses; +inf while it is not defined yet."""
        return self._average

    def start_stage(self) -> None:
        """Tells the tracker that a new training stage (learning rate, batch size) begins.

        Only the step count of the stage restarts. As in the reference training loop, the loss
        buffer and the last average carry over: for the first `window + 1` steps of the new stage
        the losses are compared with the last average of the previous stage. Calling this before
        the first stage changes nothing.
        """
        self._stage_step = 0

    def update(self, loss: float) -> Decision:
        """Takes the loss of the step just made and says what to do next.

        Args:
            loss: the batch loss of that step.

        Returns:
            The decision; once a stop has been returned, every later call returns it again.
        """
        loss = float(loss)
        self._losses.append(loss)
        if self._stage_step > self._window:  # the reference's zero-based `step > stagn_window`
            self._average = sum(self._losses) / self._window
        self._stage_step += 1
        if self._phase is Phase.STOPPED:
            return Decision(self._k, stop=True)
        return self._step(loss, self._average)

    def budget_spent(self) -> Decision | None:
        """Tells the tracker that a training stage ran out of steps before it returned a stop.

        Returns:
            What to do before the next stage (restore a checkpoint, with a note saying why), or
            None to go on with the current model and k. The base class returns None.
        """
        return None

    def state_dict(self) -> dict[str, Any]:
        """The whole state, as plain JSON data (no NaN or infinity: those become strings).

        `make_tracker(d["kind"], **d["params"]).load_state_dict(d)` rebuilds a tracker that
        returns the same decisions as this one for the same later losses.
        """
        return {
            "kind": self.kind,
            "params": self._params(),
            "k": self._k,
            "phase": self._phase.value,
            "losses": [_encode_float(x) for x in self._losses],
            "stage_step": self._stage_step,
            "average": _encode_float(self._average),
            **self._state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a state saved by `state_dict` from a tracker of the same kind and parameters.

        Raises:
            ValueError: if the state comes from another kind of tracker or other parameters.
        """
        params = {**self._added_params, **state["params"]}
        if state["kind"] != self.kind or params != self._params():
            raise ValueError(
                f"this state belongs to a {state['kind']!r} tracker with {state['params']}, "
                f"not to a {self.kind!r} tracker with {self._params()}"
            )
        losses = [_decode_float(x) for x in state["losses"]]
        if len(losses) > self._window:
            raise ValueError(f"{len(losses)} saved losses do not fit a window of {self._window}")
        self._k = int(state["k"])
        self._phase = Phase(state["phase"])
        self._losses = deque(losses, maxlen=self._window)
        self._stage_step = int(state["stage_step"])
        self._average = _decode_float(state["average"])
        self._set_state(state)

    def _stop(self) -> Decision:
        self._phase = Phase.STOPPED
        return Decision(self._k, stop=True)

    @abstractmethod
    def _step(self, loss: float, average: float) -> Decision:
        """The decision for a step of a tracker that has not stopped."""

    @abstractmethod
    def _params(self) -> dict[str, Any]:
        """The constructor arguments, as plain JSON data."""

    @abstractmethod
    def _state(self) -> dict[str, Any]:
        """The state beyond `k`, the phase and the window, as plain JSON data."""

    @abstractmethod
    def _set_state(self, state: dict[str, Any]) -> None:
        """Restores what `_state` saved."""


class FixedTracker(Tracker):
    """Always the same rank: never saves, loads or stops (the reference's `RRAE_fixed_Tracker`).

    Args:
        k: the bottleneck rank.
        window: losses in the moving average (kept only for display).
    """

    kind = "fixed"

    def __init__(self, k: int, window: int = DEFAULT_WINDOW) -> None:
        super().__init__(_int_param("k", k, minimum=1), Phase.FIXED, window)

    def _step(self, loss: float, average: float) -> Decision:
        return Decision(self._k)

    def _params(self) -> dict[str, Any]:
        return {"k": self._k, "window": self._window}

    def _state(self) -> dict[str, Any]:
        return {}

    def _set_state(self, state: dict[str, Any]) -> None:
        pass


class AdaptiveTracker(Tracker):
    """The generic adaptive algorithm: start large, lower k while the loss keeps up.

    The reference's `RRAE_gen_Tracker`. Three phases:

    * INIT: train at `k_init`. Count the steps whose relative change is below `eps_perc` (the
      count is never reset); at the `patience_init`-th one the current average becomes the target
      loss. A loss below `perf_loss` ends the phase at once, with `perf_loss` as the target; it
      wins when both happen on the same step.
    * SEARCH: every `patience_conv` consecutive steps whose loss beats the target lower k by one,
      and the model trained at the old k is saved under that old k. A step that does not beat the
      target counts as "not right" when its relative change is below `eps_0` or its loss is above
      the average; a step that beats the target resets that count. After `patience_not_right`
      such steps k is too small: k goes up by one, the checkpoint saved under that k is loaded,
      the optimizer is reset, and the phase is CONVERGED.
    * CONVERGED: stop after `converged_steps` steps in this phase, or once `patience_not_right`
      steps (counted since the phase began) had a relative change below `eps_perc`.

    The search ends at `k_min` as in the reference: a SEARCH step that starts at k <= `k_min`
    is handled as the first CONVERGED step. k never goes below 1: at k = 1 a step that beats the
    target ends the search there (the reference would go on to k = 0, an empty bottleneck);
    until then k = 1 is on trial like any other k and fails back to k = 2 the same way.

    If SEARCH runs out of patience before k was ever lowered, `k_init` is kept and the phase is
    CONVERGED with nothing loaded: there is no checkpoint at `k_init + 1`. (The reference raises
    k to `k_init + 1` and asks for that missing checkpoint.)

    If the stage's steps run out during SEARCH (`budget_spent`), the k in use has not beaten the
    target (it would have been lowered) and has not failed either: it was never shown to be
    enough. k goes back up by one, to the last k that beat the target, with the checkpoint a
    failure would load, and the decision's note says so. (The reference goes on with the k in
    use.)

    Two sets of rules, `rules`:

    * `"current"` (default): the reference as it is now (`RRAE_gen_Tracker` since autumn 2025),
      as described above.
    * `"paper"`: the reference as it was when the paper's results were made (February–March
      2025). A step is "not right" only when its relative change is below `eps_0` (a loss above
      the average does not count). Lowering k saves the model only if k had been in use for at
      least `save_steps` calls (INIT's included, for `k_init`) and the lowering is not on the
      first SEARCH step after INIT or after the previous lowering. On failure k goes up by one
      and the last checkpoint saved is loaded, whatever k it was saved at (nothing if none
      was), and the optimizer state is kept. Its synthetic runs ended INIT on a loss target
      (`perf_loss=1`, i.e. 1 %) rather than on `patience_init`.

    Args:
        k_init: the starting rank; choose it large (at most the bottleneck's full rank).
        patience_conv: consecutive steps beating the target needed to lower k.
        patience_init: stagnating steps that end INIT, or None to rely on `perf_loss` alone.
        patience_not_right: "not right" steps before k is raised again, and stagnating steps
            before CONVERGED stops.
        perf_loss: a target loss known in advance; 0 or less means none.
        eps_0: relative change (percent) below which a SEARCH step stagnates.
        eps_perc: relative change (percent) below which an INIT or CONVERGED step stagnates.
        k_min: the smallest rank the search may reach (it never goes below 1).
        converged_steps: steps in CONVERGED before stopping, or None for no limit.
        window: losses in the moving average.
        rules: `"current"` or `"paper"` (above).
        save_steps: with the paper's rules, the calls at a k before lowering it saves it.

    Raises:
        ValueError: for a parameter out of range, or when INIT could never end (no
            `patience_init` and no positive `perf_loss`).
    """

    kind = "adaptive"
    _added_params: ClassVar[dict[str, Any]] = {"rules": "current", "save_steps": 20}

    def __init__(
        self,
        k_init: int,
        patience_conv: int = 1,
        patience_init: int | None = None,
        patience_not_right: int = 500,
        perf_loss: float = 0.0,
        eps_0: float = 1.0,
        eps_perc: float = 5.0,
        k_min: int = 0,
        converged_steps: int | None = None,
        window: int = DEFAULT_WINDOW,
        rules: str = "current",
        save_steps: int = 20,
    ) -> None:
        if rules not in RULES:
            raise ValueError(f"rules must be one of {RULES}, got {rules!r}")
        self.rules = rules
        self.save_steps = _int_param("save_steps", save_steps, minimum=1)
        self.k_init = _int_param("k_init", k_init, minimum=1)
        self.patience_conv = _int_param("patience_conv", patience_conv, minimum=1)
        self.patience_init = (
            None if patience_init is None else _int_param("patience_init", patience_init, 1)
        )
        self.patience_not_right = _int_param("patience_not_right", patience_not_right, 1)
        self.perf_loss = _float_param("perf_loss", perf_loss)
        self.eps_0 = _float_param("eps_0", eps_0, minimum=0.0)
        self.eps_perc = _float_param("eps_perc", eps_perc, minimum=0.0)
        self.k_min = _int_param("k_min", k_min, minimum=0)
        self.converged_steps = (
            None if converged_steps is None else _int_param("converged_steps", converged_steps, 0)
        )
        if self.patience_init is None and self.perf_loss <= 0.0:
            raise ValueError(
                "the initial phase could never end: set patience_init or a positive perf_loss"
            )
        if self.k_min > self.k_init:
            raise ValueError(f"k_min={self.k_min} is larger than k_init={self.k_init}")
        super().__init__(self.k_init, Phase.INIT, window)
        self._target = math.nan  # the loss a smaller k must still beat; unknown during INIT
        self._count = 0  # stagnating (INIT, CONVERGED) or "not right" (SEARCH) steps
        self._count_conv = 0  # consecutive SEARCH steps beating the target
        self._converged_steps = 0  # steps taken in CONVERGED
        self._calls_at_k = 0  # calls since k was last changed by the search (INIT's included)
        self._search_calls = 0  # SEARCH calls since it began or k was last lowered
        self._last_saved: int | None = None  # the tag of the last checkpoint saved

    def _step(self, loss: float, average: float) -> Decision:
        rel = _relative_percent(loss, average)
        self._calls_at_k += 1
        if self._phase is Phase.INIT:
            return self._init_step(loss, average, rel)
        if self._phase is Phase.SEARCH and self._k <= self.k_min:
            self._phase = Phase.CONVERGED
        if self._phase is Phase.SEARCH:
            return self._search_step(loss, average, rel)
        return self._converged_step(rel)

    def _init_step(self, loss: float, average: float, rel: float) -> Decision:
        if self.patience_init is not None and rel < self.eps_perc:
            self._count += 1
            if self._count == self.patience_init:
                self._count = 0
                self._target = average
                self._phase = Phase.SEARCH
        if loss < self.perf_loss:
            self._count = 0
            self._target = self.perf_loss
            self._phase = Phase.SEARCH
        return Decision(self._k)

    def _search_step(self, loss: float, average: float, rel: float) -> Decision:
        paper = self.rules == "paper"
        self._search_calls += 1
        if loss < self._target:
            self._count = 0
            self._count_conv += 1
            if self._count_conv < self.patience_conv:
                return Decision(self._k)
            self._count_conv = 0
            if self._k == 1:  # reached the target at the smallest rank: the search ends here
                self._phase = Phase.CONVERGED
                return Decision(self._k)
            saved: int | None = self._k
            if paper and (
                self._search_calls == self.patience_conv or self._calls_at_k < self.save_steps
            ):
                saved = None
            self._k -= 1
            self._calls_at_k = self._search_calls = 0
            if saved is not None:
                self._last_saved = saved
            return Decision(self._k, save=saved)
        self._count_conv = 0
        if rel < self.eps_0 or (not paper and loss > average):
            self._count += 1
            if self._count == self.patience_not_right:
                self._count = 0
                self._phase = Phase.CONVERGED
                if self._k < self.k_init:
                    missed = "stagnated" if paper else "stagnated or worsened"
                    why = (
                        f"k = {self._k} did not reach the target loss {self._target:.4g} "
                        f"({self.patience_not_right} steps {missed} above it)"
                    )
                    return self._back_up(why, reset_optimizer=not paper)
        return Decision(self._k)

    def _back_up(self, why: str, reset_optimizer: bool) -> Decision:
        """k + 1 with the checkpoint the rules restore: the one saved at k + 1, or (paper) the
        last one saved; `why` begins the note."""
        self._k += 1
        self._calls_at_k = 0
        load = self._k if self.rules == "current" else self._last_saved
        if load is None:
            return Decision(self._k, note=f"{why}: k = {self._k}, no checkpoint to restore")
        at = f"saved at k = {load}" if load == self._k else f"last saved (at k = {load})"
        note = f"{why}: k = {self._k} with the model {at}"
        return Decision(self._k, load=load, reset_optimizer=reset_optimizer, note=note)

    def budget_spent(self) -> Decision | None:
        if self._phase is not Phase.SEARCH or self._k >= self.k_init:
            return None
        self._phase = Phase.CONVERGED
        why = (
            f"the stage ended while k = {self._k} was on trial (it had not reached the "
            f"target loss {self._target:.4g})"
        )
        return self._back_up(why, reset_optimizer=False)

    def _converged_step(self, rel: float) -> Decision:
        self._converged_steps += 1
        if self.converged_steps is not None and self._converged_steps >= self.converged_steps:
            return self._stop()
        if rel < self.eps_perc:
            self._count += 1
            if self._count == self.patience_not_right:
                return self._stop()
        return Decision(self._k)

    def _params(self) -> dict[str, Any]:
        return {
            "k_init": self.k_init,
            "patience_conv": self.patience_conv,
            "patience_init": self.patience_init,
            "patience_not_right": self.patience_not_right,
            "perf_loss": self.perf_loss,
            "eps_0": self.eps_0,
            "eps_perc": self.eps_perc,
            "k_min": self.k_min,
            "converged_steps": self.converged_steps,
            "window": self._window,
            "rules": self.rules,
            "save_steps": self.save_steps,
        }

    def _state(self) -> dict[str, Any]:
        return {
            "target": _encode_float(self._target),
            "count": self._count,
            "count_conv": self._count_conv,
            "converged_steps_taken": self._converged_steps,
            "calls_at_k": self._calls_at_k,
            "search_calls": self._search_calls,
            "last_saved": self._last_saved,
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self._target = _decode_float(state["target"])
        self._count = int(state["count"])
        self._count_conv = int(state["count_conv"])
        self._converged_steps = int(state["converged_steps_taken"])
        # Absent from states saved before the paper's rules existed (they did not use them).
        self._calls_at_k = int(state.get("calls_at_k", 0))
        self._search_calls = int(state.get("search_calls", 0))
        last = state.get("last_saved")
        self._last_saved = None if last is None else int(last)


class ParsimoniousTracker(Tracker):
    """The parsimonious algorithm: start small, add one mode each time the loss stagnates.

    The reference's `RRAE_pars_Tracker`. In GROWTH a step stagnates when `|loss - avg|` is below
    `eps_perc` in absolute terms (loss units, not percent, as in the reference). After `patience`
    such steps the model is saved under the current k; then, if the average is within `eps_perc`
    percent of the average recorded when the previous mode was added, that mode did not help: k
    goes down by one and the phase is CONVERGED (the model is not reloaded). Otherwise k goes up
    by one. In CONVERGED, training stops after `patience` steps whose relative change is below
    `eps_perc` percent.

    Args:
        k_init: the starting rank; None means 1.
        patience: stagnating steps before each decision.
        eps_perc: the stagnation threshold (absolute in GROWTH, percent otherwise).
        window: losses in the moving average.

    Raises:
        ValueError: for a parameter out of range.
    """

    kind = "parsimonious"

    def __init__(
        self,
        k_init: int | None = 1,
        patience: int = 5000,
        eps_perc: float = 1.0,
        window: int = DEFAULT_WINDOW,
    ) -> None:
        self.k_init = 1 if k_init is None else _int_param("k_init", k_init, minimum=1)
        self.patience = _int_param("patience", patience, minimum=1)
        self.eps_perc = _float_param("eps_perc", eps_perc, minimum=0.0)
        super().__init__(self.k_init, Phase.GROWTH, window)
        self._count = 0  # stagnating steps
        self._previous_mode_average = math.inf  # the average when the last mode was added

    def _step(self, loss: float, average: float) -> Decision:
        if self._phase is Phase.GROWTH:
            if abs(loss - average) < self.eps_perc:
                self._count += 1
                if self._count == self.patience:
                    self._count = 0
                    saved = self._k
                    change = _relative_percent(average, self._previous_mode_average)
                    if change < self.eps_perc:
                        self._k -= 1
                        self._phase = Phase.CONVERGED
                    else:
                        self._k += 1
                        self._previous_mode_average = average
                    return Decision(self._k, save=saved)
        elif _relative_percent(loss, average) < self.eps_perc:
            self._count += 1
            if self._count == self.patience:
                return self._stop()
        return Decision(self._k)

    def _params(self) -> dict[str, Any]:
        return {
            "k_init": self.k_init,
            "patience": self.patience,
            "eps_perc": self.eps_perc,
            "window": self._window,
        }

    def _state(self) -> dict[str, Any]:
        return {
            "count": self._count,
            "previous_mode_average": _encode_float(self._previous_mode_average),
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self._count = int(state["count"])
        self._previous_mode_average = _decode_float(state["previous_mode_average"])


_KINDS: dict[str, type[Tracker]] = {
    cls.kind: cls for cls in (FixedTracker, AdaptiveTracker, ParsimoniousTracker)
}


def make_tracker(kind: str, **params: Any) -> Tracker:
    """Builds a tracker by name.

    Args:
        kind: "fixed", "adaptive" or "parsimonious".
        **params: the tracker's constructor arguments.

    Returns:
        The new tracker.

    Raises:
        ValueError: for an unknown kind or a parameter out of range.
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown tracker kind {kind!r}; expected one of {sorted(_KINDS)}")
    known = inspect.signature(_KINDS[kind]).parameters
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(
            f"unknown {kind} tracker parameter{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}; known: {', '.join(known)}"
        )
    return _KINDS[kind](**params)


def _relative_percent(value: float, reference: float) -> float:
    """`100 * |value - reference| / |reference|`; NaN when undefined (never below a threshold)."""
    if reference == 0.0:
        return math.nan
    return 100.0 * abs(value - reference) / abs(reference)


def _int_param(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def _float_param(name: str, value: Any, minimum: float = -math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value < minimum:
        raise ValueError(f"{name} must be finite and at least {minimum}, got {value}")
    return float(value)


def _encode_float(value: float) -> float | str:
    return value if math.isfinite(value) else repr(value)


def _decode_float(value: float | str) -> float:
    if isinstance(value, str):
        if value not in _NON_FINITE:
            raise ValueError(f"not an encoded float: {value!r}")
        return _NON_FINITE[value]
    return float(value)
