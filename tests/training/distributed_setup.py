"""The run that test_multi_process.py trains in one process and in several."""

from __future__ import annotations

import jax
import numpy as np

from rrae_fast.models import ModelConfig, build_model
from rrae_fast.training import AdaptiveTracker, Stage, fit


def run(**kwargs):
    coef = np.random.default_rng(2).standard_normal((64, 3))
    grid = np.linspace(0, 1, 24)
    x = (coef @ np.stack([np.sin(3 * grid), np.cos(2 * grid), grid**2])).astype(np.float32)
    config = ModelConfig(kind="arrae", latent_size=16, k=6, width=32, decoder_depth=2)
    model = build_model(config, (24,), key=jax.random.key(1))
    tracker = AdaptiveTracker(6, patience_init=5, patience_not_right=5, window=4)
    stages = [Stage(30, 3e-3, 16), Stage(6, 1e-3, 16, mode="infer")]
    return fit(model, x, stages, tracker=tracker, progress=False, checkpoint_every=10, **kwargs)
