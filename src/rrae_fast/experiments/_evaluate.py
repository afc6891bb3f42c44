"""The paper's evaluation of a trained run (Sec. 6.3), as numbers and figures.

Reconstruction errors are `100·‖X̂ − X‖_F/‖X‖_F` over the whole set, on the data set's own scale
(model outputs are mapped back through the normaliser); RRAEs reconstruct by projection on the
final basis. Interpolation decodes 5 points between the codes of 50 random training pairs;
random sampling decodes 250 draws from the Gaussian fitted to the training codes. On the
synthetic set both are scored by fitting a bump to each generated image (percent misfit).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..evaluation import (
    effective_rank,
    fit_bumps,
    interpolate,
    interpolation_pairs,
    latent_gaussian,
    map_batches,
    mean_std,
    normalized_spectrum,
    plot_spectrum,
    plot_strip,
    random_samples,
    reconstruction_error,
)
from ._run import Run

NUM_PAIRS, NUM_POINTS, NUM_SAMPLES = 50, 5, 250  # the paper's 250 generated images each
RANK_TOL = 1e-3  # singular values below 1e-3·σ1 are not counted as significant


#: What each number of `Metrics` means (written beside them in `metrics.json`).
UNITS = {
    "k": "code size: the final bottleneck of rank-reducing models, else the latent length",
    "train_error": "percent: 100·‖X̂ − X‖_F/‖X‖_F over the training set, on the data's scale",
    "test_error": "percent: the same over the test set",
    "interpolation": "percent: mean and std of the bump-fit misfit of 250 interpolated images",
    "random": "percent: mean and std of the bump-fit misfit of 250 random samples",
    "latent_rank": f"count of singular values of the training latent above {RANK_TOL:g}·σ_1",
    "spectrum": "σ_i/σ_1 of the training latent (the encoder's output)",
    "spectrum_projected": "σ_i/σ_1 after the bottleneck's inference-time operation",
    "training": "seed, steps (fine-tuning included), tracker preset, when k took its final value",
}


@dataclasses.dataclass
class Metrics:
    """Table-1 numbers of one run (errors in percent; `None` where not defined).

    Attributes:
        k: the code size (the final bottleneck of rank-reducing models).
        train_error, test_error: reconstruction errors.
        interpolation, random: bump misfit mean ± std of generated images (synthetic only).
        latent_rank: significant singular values of the training latent.
        spectrum: `σ_i/σ_1` of the training latent, the encoder's output.
        spectrum_projected: the same after the bottleneck's inference-time operation (the
            projection on the final basis for RRAEs; the latent itself for most others).
        training: how the run was trained (`training_record`): seed, budget, tracker preset,
            when `k` took its final value and for how many steps, the tracker's notes.
    """

    k: int
    train_error: float
    test_error: float
    interpolation: tuple[float, float] | None
    random: tuple[float, float] | None
    latent_rank: int
    spectrum: list[float]
    spectrum_projected: list[float] = dataclasses.field(default_factory=list)
    training: dict = dataclasses.field(default_factory=dict)

    def summary(self) -> str:
        def pm(v):
            return "n/a" if v is None else f"{v[0]:.2f} ± {v[1]:.2f}"

        tail = self.spectrum[self.k] if self.k < len(self.spectrum) else 0.0
        lines = [
            f"k = {self.k}   (training latent: σ_(k+1)/σ_1 = {tail:.2e}, "
            f"{self.latent_rank} values above {RANK_TOL:g}·σ_1)"
        ]
        since = self.training.get("final_k_since_step")
        if since is not None:
            lines.append(
                f"k = {self.k} in use from step {since}: "
                f"{self.training['main_steps_at_final_k']} of the "
                f"{self.training['main_steps']} main-stage steps"
            )
        lines.append(f"train error {self.train_error:.2f} %   test error {self.test_error:.2f} %")
        lines.append(f"interpolation {pm(self.interpolation)} %   random {pm(self.random)} %")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """The fields, and under `"units"` what each number means."""
        return dataclasses.asdict(self) | {"units": UNITS}


@eqx.filter_jit
def _apply(model, method: str, x):
    """`model.<method>(x)`, compiled once per method and shape (`method` is static)."""
    return getattr(model, method)(x)


@eqx.filter_jit
def _from_codes(model, a):
    return model.bottleneck.from_codes(a)


def training_record(run: Run) -> dict:
    """How `run` was trained, for `metrics.json`: seed, budget (steps in all, of which
    fine-tuning), the aRRAE tracker preset, the step (1-based, counted from the start) from
    which the main stage used its final `k` without a break, the main-stage steps at that `k`
    in all, and the tracker's notes (restores) as `[step, sentence]`."""
    config, history = run.config, run.history
    stages = config.stages()
    record: dict = {
        "seed": config.seed,
        "steps": config.steps,
        "finetune_steps": sum(s.steps for s in stages if s.mode == "infer"),
        "tracker_preset": config.tracker_preset if config.model.kind == "arrae" else None,
        "main_steps": sum(1 for s in history.stage if s == 0),
        "final_k_since_step": None,
        "main_steps_at_final_k": 0,
        "notes": [[step, text] for step, text in history.notes],
    }
    main = [k for k, s in zip(history.k, history.stage) if s == 0]
    if config.rank_reducing and run.k in main:
        last = max(i for i, k in enumerate(main) if k == run.k)
        first = last
        while first > 0 and main[first - 1] == run.k:
            first -= 1
        record["final_k_since_step"] = first + 1
        record["main_steps_at_final_k"] = main.count(run.k)
    return record


@dataclasses.dataclass(frozen=True)
class Codec:
    """A trained run's maps on the data set's own scale (the normaliser applied and undone).

    Attributes:
        reconstruct: samples `[b, ...]` → reconstructions `[b, ...]` (RRAEs: by projection on
            the final basis).
        encode: samples `[b, ...]` → codes `[b, d]` (the code space generation works in).
        decode: codes `[b, d]` → samples `[b, ...]`.
        latent: samples `[b, ...]` → the encoder's output `[b, L]`, before the bottleneck.
    """

    reconstruct: Callable[[Any], Any]
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]
    latent: Callable[[Any], Any]


def codec(run: Run) -> Codec:
    """The maps of `run`'s model between the data set's scale and its code space."""
    model, norm = run.model, run.normalizer
    dtype = jnp.float32

    def to_model(x):
        return jnp.asarray(norm.apply(np.asarray(x)), dtype)

    return Codec(
        reconstruct=lambda x: norm.invert(_apply(model, "reconstruct", to_model(x))),
        encode=lambda x: _apply(model, "compress", to_model(x)),
        decode=lambda a: norm.invert(_apply(model, "decompress", jnp.asarray(a, dtype))),
        latent=lambda x: _apply(model, "encode", to_model(x)),
    )


def evaluate(run: Run, out_dir: str | os.PathLike | None = None, *, seed: int = 0) -> Metrics:
    """Evaluate a trained run; with `out_dir`, also draw its figures there.

    Figures, each titled with the model, its code size and the seed: `spectrum.png`
    (normalised singular values of the training latent, linear and log scale),
    `interpolation.png` (a row per training pair: the two samples at the ends, between them
    the decoded path from one code to the other, its ends their reconstructions),
    `samples.png` (64 random samples) and `reconstructions.png` (test samples above their
    reconstructions).
    """
    model, data = run.model, run.data
    maps = codec(run)
    reconstruct, encode, decode = maps.reconstruct, maps.encode, maps.decode
    train_error = reconstruction_error(reconstruct, data.x_train)
    test_error = reconstruction_error(reconstruct, data.x_test)
    key_pairs, key_samples = jax.random.split(jax.random.key(seed))
    pairs = interpolation_pairs(len(data.x_train), NUM_PAIRS, key=key_pairs)
    strips = np.asarray(
        interpolate(encode, decode, data.x_train, pairs, NUM_POINTS, include_endpoints=True)
    )
    inner = strips.reshape(NUM_PAIRS, NUM_POINTS + 2, *strips.shape[1:])[:, 1:-1]
    inner = inner.reshape(-1, *strips.shape[1:])
    codes = np.asarray(map_batches(encode, data.x_train))
    mean, cov = latent_gaussian(codes)
    samples = np.asarray(
        random_samples(decode, mean, cov, NUM_SAMPLES, key=key_samples, dtype=jnp.float32)
    )
    interp_score = random_score = None
    if data.name == "synthetic":
        scale = data.scale["train"]
        interp_score = mean_std(fit_bumps(inner, scale.offset, scale.factor).errors)
        random_score = mean_std(fit_bumps(samples, scale.offset, scale.factor).errors)
    latent = np.asarray(map_batches(maps.latent, data.x_train))
    spectrum = normalized_spectrum(latent)
    projected = np.asarray(map_batches(lambda a: _from_codes(model, jnp.asarray(a)), codes))
    metrics = Metrics(
        k=run.k,
        train_error=float(train_error),
        test_error=float(test_error),
        interpolation=interp_score,
        random=random_score,
        latent_rank=effective_rank(spectrum, RANK_TOL),
        spectrum=[float(v) for v in spectrum],
        spectrum_projected=[float(v) for v in normalized_spectrum(projected)],
        training=training_record(run),
    )
    if out_dir is not None:
        _figures(run, Path(out_dir), seed, spectrum, strips, pairs, samples, reconstruct)
    return metrics


ROWS = 10  # pairs in the interpolation figure


def _figures(run, out, seed, spectrum, strips, pairs, samples, reconstruct) -> None:
    """`spectrum.png`, `interpolation.png`, `samples.png` and `reconstructions.png`, each
    titled with the model, its code size and the seed."""
    data = run.data
    who = f"{run.config.model.kind}, k = {run.k}, seed {seed}"
    plot_spectrum(spectrum, out / "spectrum.png", title=f"{who}: training latent")
    # Each row: the first training sample, the decoded path from its code (t = 0, its
    # reconstruction) to the second's (t = 1), the second sample.
    width = NUM_POINTS + 2
    rows = min(ROWS, len(pairs))
    decoded = np.asarray(strips[: rows * width]).reshape(rows, width, *strips.shape[1:])
    ends = np.asarray(data.x_train)[np.asarray(pairs[:rows])]  # [rows, 2, ...]
    grid = np.concatenate([ends[:, :1], decoded, ends[:, 1:]], axis=1)
    t = [f"{i}/{NUM_POINTS + 1}" for i in range(1, NUM_POINTS + 1)]
    plot_strip(
        grid.reshape(-1, *grid.shape[2:]),
        out / "interpolation.png",
        rows,
        width + 2,
        title=f"{who}: interpolation between the codes of training pairs",
        col_labels=["sample A", "t = 0", *t, "t = 1", "sample B"],
    )
    plot_strip(
        samples[:64],
        out / "samples.png",
        8,
        8,
        title=f"{who}: decoded draws of the Gaussian fitted to the training codes",
    )
    shown = min(8, len(data.x_test))
    originals = np.asarray(data.x_test[:shown])
    plot_strip(
        np.concatenate([originals, np.asarray(reconstruct(originals))]),
        out / "reconstructions.png",
        2,
        shown,
        title=f"{who}: test samples (top) and their reconstructions (bottom)",
    )
