"""Train a model from a :class:`RunConfig`, and load a trained run back from its directory."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import jax
from jax.sharding import Mesh

from ..data import Dataset, Normalizer, load_dataset
from ..models import Autoencoder, build_model
from ..training import CheckpointDir, CheckpointError, History, fit, with_placeholder_basis
from ._config import RunConfig


@dataclasses.dataclass
class Run:
    """A trained model with what is needed to use and evaluate it.

    Attributes:
        config: the run's config.
        model: the trained model (with its final basis for rank-reducing models).
        normalizer: maps data-set values to the model's input scale and back.
        data: the data set it was trained on.
        history: per-step loss and `k` (empty for a run loaded from disk without one).
        k: the code size: the final bottleneck of rank-reducing models, the latent length `L`
            of models without one (`k` of the basis models and Diabolo).
    """

    config: RunConfig
    model: Autoencoder
    normalizer: Normalizer
    data: Dataset
    history: History
    k: int


def load_data(config: RunConfig) -> Dataset:
    """The data set a run config names."""
    if config.dataset == "synthetic":
        return load_dataset(
            "synthetic",
            train_size=config.train_size,
            test_size=config.test_size,
            test_mode=config.test_mode,
            seed=config.seed,
        )
    return load_dataset(config.dataset, config.data_dir)


def _skeleton(config: RunConfig, data: Dataset) -> Autoencoder:
    return build_model(config.model, data.sample_shape, key=jax.random.key(config.seed))


# Files a run directory holds besides the checkpoint's: written by `evaluate` and the CLI.
RUN_OUTPUTS = (
    "metrics.json",
    "spectrum.png",
    "interpolation.png",
    "samples.png",
    "reconstructions.png",
)


def train(
    config: RunConfig,
    out_dir: str | os.PathLike | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    data: Dataset | None = None,
    mesh: Mesh | None = None,
) -> Run:
    """Train the model of `config` on its data set.

    Everything that can be refused (stages, tracker parameters, data, an existing run in
    `out_dir`, another process writing there) is checked before the directory is touched, and
    the directory is locked against other writers while the run lasts.

    Args:
        config: the run.
        out_dir: checkpoint directory (config, periodic and final checkpoints; the tracker's
            restore points while the run lasts); None keeps everything in memory.
        resume: continue the run found in `out_dir` (it must have the same config).
        overwrite: replace a run found in `out_dir` (its checkpoints, config, metrics and
            figures are removed first). Without it, or `resume`, such a directory is refused.
        progress: show a progress bar.
        data: the data set, if already loaded (must be the one `config` names).
        mesh: train data-parallel over these devices (:func:`rrae_fast.training.fit`); the
            batch size must be a multiple of their count. One process only: under
            :func:`jax.distributed.initialize`, call :func:`rrae_fast.training.fit`.

    Returns:
        The trained :class:`Run`.

    Raises:
        FileExistsError: `out_dir` holds a run and neither `resume` nor `overwrite` is set.
        ValueError: an invalid config, or a run with another config to resume.
        rrae_fast.training.RunDirectoryBusy: another process is writing to `out_dir`.
    """
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other")
    if jax.process_count() > 1:
        raise ValueError(
            "train() writes its run directory from one process; with several processes "
            "(jax.distributed), call rrae_fast.training.fit, which writes from process 0 only"
        )
    stages = config.stages()
    tracker = config.make_tracker()
    data = load_data(config) if data is None else data
    for stage in stages:
        if stage.steps and stage.batch_size > len(data.x_train):
            raise ValueError(
                f"batch size {stage.batch_size} exceeds the {len(data.x_train)} training samples"
            )
    normalizer = Normalizer.fit(config.normalization, data.x_train)
    saved = {"run": config.to_dict(), "normalizer": normalizer.to_dict()}
    if out_dir is None:
        return _fit_run(config, data, normalizer, stages, tracker, None, resume, progress, mesh)
    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path} exists and is not a directory")
    ckpt = CheckpointDir(path)
    with ckpt.locked():
        if ckpt.holds_run() and not (resume or overwrite):
            raise FileExistsError(
                f"{path} holds a training run; resume it (--resume), replace it (--overwrite) "
                "or choose another output directory"
            )
        if resume and ckpt.exists() and _as_now(ckpt) != saved:
            raise ValueError(f"{path} holds a run with another config; cannot resume it")
        if overwrite:
            ckpt.clear()
            for name in RUN_OUTPUTS:
                (path / name).unlink(missing_ok=True)
        ckpt.write_config(saved)
        run = _fit_run(config, data, normalizer, stages, tracker, ckpt, resume, progress, mesh)
        ckpt.remove_tags()  # the finished run no longer needs the tracker's restore points
        return run


def _read_saved(ckpt: CheckpointDir) -> tuple[RunConfig, Normalizer]:
    """The run config and normaliser saved in a run directory's `config.json`.

    Raises:
        CheckpointError: the file is missing, not JSON, or not a run's config.
    """
    saved = ckpt.read_config()
    try:
        return RunConfig.from_dict(saved["run"]), Normalizer.from_dict(saved["normalizer"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        path = ckpt.path / "config.json"
        raise CheckpointError(
            path, f"{path} is damaged: it does not describe a run ({type(e).__name__}: {e})"
        ) from None


def _as_now(ckpt: CheckpointDir) -> dict:
    """A run directory's saved config with the fields added since it was written filled in."""
    config, normalizer = _read_saved(ckpt)
    return {"run": config.to_dict(), "normalizer": normalizer.to_dict()}


def _fit_run(config, data, normalizer, stages, tracker, ckpt, resume, progress, mesh) -> Run:
    result = fit(
        _skeleton(config, data),
        normalizer.apply(data.x_train),
        stages,
        tracker=tracker,
        seed=config.seed,
        checkpoint=ckpt,
        resume=resume,
        progress=progress,
        mesh=mesh,
    )
    return Run(
        config,
        result.model,
        normalizer,
        data,
        result.history,
        int(result.model.bottleneck.code_size),
    )


def load_run(out_dir: str | os.PathLike, data: Dataset | None = None) -> Run:
    """The run saved in `out_dir` by :func:`train` (its last complete checkpoint).

    Raises:
        FileNotFoundError: when `out_dir` holds no checkpoint.
    """
    ckpt = CheckpointDir(out_dir) if Path(out_dir).is_dir() else None
    if ckpt is None or not ckpt.exists():
        raise FileNotFoundError(f"no training run found in {out_dir} (expected state.json)")
    config, normalizer = _read_saved(ckpt)
    data = load_data(config) if data is None else data
    model = _skeleton(config, data)
    state = ckpt.read_state()
    if state["stage"] < len(config.stages()) or state["step"] != 0:
        raise ValueError(f"the run in {out_dir} has not finished: resume it first")
    if state["basis_k"] is not None:
        model = with_placeholder_basis(model, state["basis_k"])
    model, _ = ckpt.load(model, None)
    history = History.from_dict(state["history"])
    return Run(
        config,
        model,
        normalizer,
        data,
        history,
        int(model.bottleneck.code_size),
    )
