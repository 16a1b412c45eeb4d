"""The start-up every rank goes through before it trains, shared by
`mpilearn train`, `mpilearn optimize` and `mpilearn.fit`.

The order matters: the backend, the thread caps and the visible GPU are read
by the compute libraries when they load, so under the command line all of it
happens before Keras is imported. Under `mpilearn.fit` the user's process has
loaded Keras already: the backend is the user's, and the thread count is
applied again to the loaded backend by training.train. Seeding and logging
depend on the rank's role, which training.train knows: it does both for all three.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import env
from .config import RunConfig

if TYPE_CHECKING:
    from .comm import Communicator


def start_ranks(config: RunConfig, comm: Communicator | None = None, *, before_keras: bool = True) -> Communicator:
    """Fix the backend, cap thread pools, pin JAX ranks to their cores and
    give each rank its GPU; returns the communicator to train on."""
    from . import startup_times
    from .optional import require_for_run

    startup_times.mark("imports")
    require_for_run(config, backend=before_keras)
    if before_keras:
        backend = env.select_keras_backend(config.backend)
        env.skip_jax_import_unless_used(backend)
    else:
        import keras

        backend = keras.backend.backend()
    from .comm import ALIVE_S, world
    from .roles.watchdog import FIRST_EXCHANGE_S

    comm = comm or world(config.poll_max_s)
    startup_times.mark("mpi")
    if comm.size > 1:  # alive from here on: the others wait for this rank while it imports Keras (train() takes over)
        comm.beat(ALIVE_S, cap=FIRST_EXCHANGE_S)
    threads = config.threads or env.default_threads(comm.local_size)
    env.cap_thread_pools(threads)
    if backend == "jax":
        env.pin_cores(comm.local_rank, threads)  # XLA's thread pool obeys only CPU affinity
    place_on_gpu(comm, config)
    return comm


def place_on_gpu(comm: Communicator, config: RunConfig) -> None:
    """Each rank of a node picks its GPU by local rank, before any backend loads."""
    from .placement import count_gpus, gpu_for_world_rank, pin_gpu

    gpus = count_gpus()
    if not gpus:
        return
    pin_gpu(
        gpu_for_world_rank(
            comm.rank,
            comm.local_rank,
            comm.local_size,
            comm.node_ranks,
            gpus,
            config.algorithm.has_master and comm.size > 1,
            config.master_gpu,
        )
    )
