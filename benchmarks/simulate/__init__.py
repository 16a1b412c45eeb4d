"""`simulate`: a discrete-event model of mpilearn training at 8 to 4096 workers.

Pure Python and numpy: a heapq event queue, CPU work as tasks (processor
sharing when ranks outnumber cores, as on this 2-core machine), and links as
FIFO resources (latency + bytes / bandwidth); on one node (`cores` given) a
message is instead a copy on both ends, CPU work that shares the cores. What each rank does per
exchange follows the code (roles/, algorithms/), counted in passes over the
flat weight vector, whose time (`copy_s`) is the master's measured reply copy:

- downpour (asynchronous): a worker computes `sync_every` batches, prepares
  its update (`WORKER_PASSES`), sends it over the master's inbound link; the
  master serves updates one at a time, first come first served: optimizer
  step (`apply_s`) + reply copy + fixed loop cost; the weights go back over
  the master's outbound link; the worker takes them and computes again.
- sync: the same, but the master waits for every worker, averages the
  round's gradients (1.5 passes per worker), applies once and answers all.
- easgd: workers take local SGD steps (Keras SGD) and exchange weights; the
  master's elastic update is ~6 passes plus the reply.
- allreduce: every peer computes, then a ring allreduce of the gradients,
  2(p-1)/p * bytes / bandwidth + 2(p-1) * latency, then every peer applies
  the optimizer step.
- hierarchical (`--masters M`, downpour): M-1 sub-masters each serve an equal
  share of the workers as above and, every `sync_every` of their own steps,
  exchange a weight delta with the top master (3.5 passes there, plus the reply).

Inputs come from the benchmark results (results/scaling.json: a solo
worker's time per batch; master.json: apply and copy times by model size
and the loop's fixed costs; transport.json: link latency and bandwidth) or
from the command line. The model is validated against the real 1-2-4
process runs of scaling.json on this machine (cores = 2, processor sharing).
"""

from __future__ import annotations

from .command import ALGOS, WORKER_COUNTS, add_arguments, run
from .engine import Engine, Meter
from .inputs import LINKS, measured_inputs, params_for
from .model import (
    master_service_s,
    ring_allreduce_s,
    saturation_workers,
    simulate,
    single_worker_rate,
)
from .params import Params, notice_delay

__all__ = [
    "ALGOS",
    "LINKS",
    "WORKER_COUNTS",
    "Engine",
    "Meter",
    "Params",
    "add_arguments",
    "master_service_s",
    "measured_inputs",
    "notice_delay",
    "params_for",
    "ring_allreduce_s",
    "run",
    "saturation_workers",
    "simulate",
    "single_worker_rate",
]
