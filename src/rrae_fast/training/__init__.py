"""Training of autoencoders: the jitted step, stages, bottleneck trackers, checkpoints, basis,
and data parallelism over a device mesh (:func:`data_mesh`, ``fit(..., mesh=...)``).

Built on :mod:`rrae_fast.models`; the trackers are plain-Python state machines that choose the
bottleneck rank `k` from the loss history.
"""

from ._basis import final_basis as final_basis
from ._checkpoint import CheckpointDir as CheckpointDir
from ._checkpoint import CheckpointError as CheckpointError
from ._checkpoint import RunDirectoryBusy as RunDirectoryBusy
from ._fit import FitResult as FitResult
from ._fit import History as History
from ._fit import NonFiniteLoss as NonFiniteLoss
from ._fit import Stage as Stage
from ._fit import fit as fit
from ._fit import with_placeholder_basis as with_placeholder_basis
from ._mesh import data_mesh as data_mesh
from ._step import make_step as make_step
from ._trackers import AdaptiveTracker as AdaptiveTracker
from ._trackers import Decision as Decision
from ._trackers import FixedTracker as FixedTracker
from ._trackers import ParsimoniousTracker as ParsimoniousTracker
from ._trackers import Phase as Phase
from ._trackers import Tracker as Tracker
from ._trackers import make_tracker as make_tracker

__all__ = [
    "AdaptiveTracker",
    "CheckpointDir",
    "CheckpointError",
    "Decision",
    "FitResult",
    "FixedTracker",
    "History",
    "NonFiniteLoss",
    "ParsimoniousTracker",
    "Phase",
    "RunDirectoryBusy",
    "Stage",
    "Tracker",
    "data_mesh",
    "final_basis",
    "fit",
    "make_step",
    "make_tracker",
    "with_placeholder_basis",
]
