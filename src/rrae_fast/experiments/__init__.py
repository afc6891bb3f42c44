"""The paper's experiments: run configs, training runs, evaluation, Table 1 and Table 2.

This layer ties the data sets, models, training loop and evaluation together; the command line
(`rrae-fast train | evaluate | table1 | table2 | budgets`) is a thin wrapper over it.
"""

from ._budgets import VARIANTS as VARIANTS
from ._budgets import budget_study as budget_study
from ._config import RunConfig as RunConfig
from ._evaluate import Metrics as Metrics
from ._evaluate import evaluate as evaluate
from ._evaluate import training_record as training_record
from ._run import Run as Run
from ._run import load_data as load_data
from ._run import load_run as load_run
from ._run import train as train
from ._sweep import contractive_sweep as contractive_sweep
from ._table1 import ABLATION as ABLATION
from ._table1 import PAPER as PAPER
from ._table1 import TABLE1 as TABLE1
from ._table1 import table1 as table1
from ._table2 import TABLE2 as TABLE2
from ._table2 import fid_scores as fid_scores
from ._table2 import table2 as table2

__all__ = [
    "ABLATION",
    "PAPER",
    "TABLE1",
    "TABLE2",
    "VARIANTS",
    "Metrics",
    "Run",
    "RunConfig",
    "budget_study",
    "contractive_sweep",
    "evaluate",
    "fid_scores",
    "load_data",
    "load_run",
    "table1",
    "table2",
    "train",
    "training_record",
]
