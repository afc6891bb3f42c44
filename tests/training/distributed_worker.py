"""One process of a multi-process training run (started by test_multi_process.py).

Usage: python distributed_worker.py COORDINATOR NUM_PROCESSES PROCESS_ID OUT_JSON CHECKPOINT

Joins the run over the coordinator with JAX's own distributed runtime (CPU collectives over
gloo), trains the small adaptive model of `training_setup` data-parallel over the devices of
every process, and writes what it saw (its losses, k path, process and device counts) to
OUT_JSON.
"""

from __future__ import annotations

import json
import sys

import jax

from distributed_setup import run
from rrae_fast.training import CheckpointDir, data_mesh

jax.config.update("jax_cpu_collectives_implementation", "gloo")
# the test process's settings (tests/conftest.py), so that both run the same program
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")


def main(coordinator: str, processes: int, process_id: int, out: str, checkpoint: str) -> None:
    jax.distributed.initialize(coordinator, processes, process_id, initialization_timeout=120)
    mesh = data_mesh()
    result = run(mesh=mesh, checkpoint=CheckpointDir(checkpoint))
    seen = {
        "processes": jax.process_count(),
        "devices": mesh.size,
        "local_devices": jax.local_device_count(),
        "loss": result.history.loss,
        "k": result.history.k,
    }
    with open(out, "w") as f:
        json.dump(seen, f)
    jax.distributed.shutdown()


if __name__ == "__main__":
    coordinator, processes, process_id, out, checkpoint = sys.argv[1:]
    main(coordinator, int(processes), int(process_id), out, checkpoint)
