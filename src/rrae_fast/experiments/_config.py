"""A training run described by one JSON-serialisable config: data, model, budget, tracker."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..models import RANK_REDUCING, ModelConfig
from ..training import Stage, Tracker, make_tracker

# The paper's synthetic protocol (App. C and the authors' example script): 2500 forward passes,
# batch 64, the last 500 of them fine-tuning the decoder on the final basis; AdaBelief with
# learning rate 1e-3, then 1e-4; inputs min-max normalised; aRRAE starts at k = 64.
#
# The aRRAE tracker's presets (`RunConfig.tracker_preset`):
# * "authors": the authors' current example script (patience_init=50), under the rules of their
#   current code;
# * "paper": the tracker of their synthetic script of the paper's time (February 2025): the
#   initial phase ends on a loss target of 1 % (`perf_loss`), under the rules of that time
#   (`AdaptiveTracker`'s `rules="paper"`).
ADAPTIVE_PRESETS: dict[str, dict[str, Any]] = {
    "authors": {"patience_init": 50, "patience_not_right": 500},
    "paper": {"rules": "paper", "perf_loss": 1.0, "patience_not_right": 500, "save_steps": 20},
}
ADAPTIVE_DEFAULTS = ADAPTIVE_PRESETS["authors"]
PARSIMONIOUS_DEFAULTS = {"patience": 200, "eps_perc": 1.0}  # ours: 5000 cannot act in 2500 steps


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a training run needs.

    Attributes:
        model: the model family and sizes.
        dataset: `"synthetic"`, `"mnist"`, `"fashion_mnist"` or `"digits"`.
        data_dir: directory of the IDX files (MNIST, Fashion-MNIST).
        test_mode: synthetic test set: `"independent"` centres or the authors' diagonal.
        train_size, test_size: synthetic set sizes.
        steps: forward passes in total, fine-tuning included (the paper's budget).
        finetune_steps: of which decoder fine-tuning (rank-reducing models only); default
            `steps // 5` (500 of 2500).
        batch_size: samples per step.
        learning_rate, finetune_learning_rate: AdaBelief learning rates of the two stages.
        normalization: `"minmax"`, `"meanstd"` or `"none"` (scalar statistics of the train set).
        tracker: overrides of the tracker's parameters (adaptive / parsimonious models).
        tracker_preset: the aRRAE tracker's preset the overrides apply to, `"authors"` or
            `"paper"` (`ADAPTIVE_PRESETS`).
        seed: initialisation, batch order and evaluation draws.
    """

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    dataset: str = "synthetic"
    data_dir: str | None = None
    test_mode: str = "independent"
    train_size: int = 400
    test_size: int = 10000
    steps: int = 2500
    finetune_steps: int | None = None
    batch_size: int = 64
    learning_rate: float = 1e-3
    finetune_learning_rate: float = 1e-4
    normalization: str = "minmax"
    tracker: dict[str, Any] = dataclasses.field(default_factory=dict)
    tracker_preset: str = "authors"
    seed: int = 0

    def __post_init__(self):
        if self.tracker_preset not in ADAPTIVE_PRESETS:
            raise ValueError(
                f"tracker_preset must be one of {sorted(ADAPTIVE_PRESETS)}, "
                f"got {self.tracker_preset!r}"
            )
        if self.tracker_preset != "authors" and self.model.kind != "arrae":
            raise ValueError(f"a tracker preset applies to aRRAE only, not to {self.model.kind}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be ≥ 1")
        if self.finetune_steps is not None and not 0 <= self.finetune_steps <= self.steps:
            raise ValueError(f"finetune_steps must be in [0, steps={self.steps}]")

    @property
    def rank_reducing(self) -> bool:
        return self.model.kind in RANK_REDUCING

    def stages(self) -> list[Stage]:
        """The SVD stage then decoder fine-tuning (rank-reducing models), or one stage."""
        if not self.rank_reducing:
            return [Stage(self.steps, self.learning_rate, self.batch_size)]
        ft = self.steps // 5 if self.finetune_steps is None else self.finetune_steps
        return [
            Stage(self.steps - ft, self.learning_rate, self.batch_size),
            Stage(ft, self.finetune_learning_rate, self.batch_size, mode="infer"),
        ]

    def make_tracker(self) -> Tracker:
        """The bottleneck tracker: adaptive for aRRAE, parsimonious for pars-RRAE, else fixed."""
        kind = self.model.kind
        if kind == "arrae":
            params = ADAPTIVE_PRESETS[self.tracker_preset] | self.tracker
            return make_tracker("adaptive", k_init=self.model.k, **params)
        if kind == "pars_rrae":
            params = PARSIMONIOUS_DEFAULTS | self.tracker
            return make_tracker("parsimonious", k_init=self.model.k, **params)
        if self.tracker:
            raise ValueError(
                f"tracker parameters {sorted(self.tracker)} apply to the adaptive models "
                f"(arrae, pars_rrae) only; {kind} keeps a fixed k"
            )
        return make_tracker("fixed", k=self.model.k)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["model"] = self.model.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        return cls(**{**d, "model": ModelConfig.from_dict(d["model"])})
