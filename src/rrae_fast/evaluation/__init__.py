"""Evaluation of trained autoencoders (SPEC §6.3): errors, generation, bump scores, spectra, plots.

Every function takes plain callables (`encode`: inputs `[b, ...]` → codes `[b, d]`,
`decode`: codes → outputs) and arrays with the samples in the first axis, and runs the
callables batch-wise.
"""

from ._batching import map_batches as map_batches
from ._bumps import BumpFit as BumpFit
from ._bumps import fit_bumps as fit_bumps
from ._bumps import mean_std as mean_std
from ._errors import reconstruction_error as reconstruction_error
from ._errors import relative_error as relative_error
from ._fid import frechet_distance as frechet_distance
from ._generation import interpolate as interpolate
from ._generation import interpolation_pairs as interpolation_pairs
from ._generation import interpolation_weights as interpolation_weights
from ._generation import latent_gaussian as latent_gaussian
from ._generation import random_samples as random_samples
from ._generation import sample_latent as sample_latent
from ._lenet import ACCURACY_GATE as ACCURACY_GATE
from ._lenet import LeNet as LeNet
from ._lenet import fid as fid
from ._lenet import lenet_features as lenet_features
from ._lenet import load_lenet as load_lenet
from ._lenet import save_lenet as save_lenet
from ._lenet import train_lenet as train_lenet
from ._plots import plot_spectra as plot_spectra
from ._plots import plot_spectrum as plot_spectrum
from ._plots import plot_strip as plot_strip
from ._spectrum import effective_rank as effective_rank
from ._spectrum import normalized_spectrum as normalized_spectrum

__all__ = [
    "ACCURACY_GATE",
    "BumpFit",
    "LeNet",
    "effective_rank",
    "fid",
    "fit_bumps",
    "frechet_distance",
    "interpolate",
    "interpolation_pairs",
    "interpolation_weights",
    "latent_gaussian",
    "lenet_features",
    "load_lenet",
    "map_batches",
    "mean_std",
    "normalized_spectrum",
    "plot_spectra",
    "plot_spectrum",
    "plot_strip",
    "random_samples",
    "reconstruction_error",
    "relative_error",
    "sample_latent",
    "save_lenet",
    "train_lenet",
]
