"""Autoencoder models: the paper's CNN and MLP, RRAE bottlenecks and the baselines.

Convention: samples in the FIRST axis (`[batch, c, h, w]`, `[batch, t]`, latent `[batch, L]`).
Built only on the public op API (:func:`rrae_fast.rank_reduce`, :func:`rrae_fast.truncated_svd`).
"""

from ._autoencoder import Autoencoder as Autoencoder
from ._bottleneck import FixedBasis as FixedBasis
from ._bottleneck import Identity as Identity
from ._bottleneck import LearnedBasis as LearnedBasis
from ._bottleneck import LinearChain as LinearChain
from ._bottleneck import RankReduction as RankReduction
from ._cnn import CNNDecoder as CNNDecoder
from ._cnn import CNNEncoder as CNNEncoder
from ._conv import ConvTranspose2d as ConvTranspose2d
from ._losses import ContractivePenalty as ContractivePenalty
from ._losses import Penalty as Penalty
from ._losses import SparsePenalty as SparsePenalty
from ._losses import WeakRankPenalty as WeakRankPenalty
from ._losses import reconstruction_loss as reconstruction_loss
from ._losses import relative_error_loss as relative_error_loss
from ._mlp import MLPDecoder as MLPDecoder
from ._mlp import MLPEncoder as MLPEncoder
from ._zoo import KINDS as KINDS
from ._zoo import RANK_REDUCING as RANK_REDUCING
from ._zoo import ModelConfig as ModelConfig
from ._zoo import build_model as build_model

__all__ = [
    "KINDS",
    "RANK_REDUCING",
    "Autoencoder",
    "CNNDecoder",
    "CNNEncoder",
    "ContractivePenalty",
    "ConvTranspose2d",
    "FixedBasis",
    "Identity",
    "LearnedBasis",
    "LinearChain",
    "MLPDecoder",
    "MLPEncoder",
    "ModelConfig",
    "Penalty",
    "RankReduction",
    "SparsePenalty",
    "WeakRankPenalty",
    "build_model",
    "reconstruction_loss",
    "relative_error_loss",
]
