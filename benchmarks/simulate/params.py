"""The model's inputs: one configuration (`Params`), the passes over the
weight vector each role makes (counted from the code), and the polling delay
of mpilearn's non-spinning waits."""
from __future__ import annotations

import math
from dataclasses import dataclass

# Passes over the weight vector a worker makes per exchange, besides its
# compute (clients.py, worker.py): downpour/sync: the NaN check, get_weights
# for the state delta, set_weights and the copy of the base on the reply,
# and zeroing the update buffer; easgd: one more for the elastic step.
WORKER_PASSES = {"downpour": 4.5, "sync": 4.5, "easgd": 5.5, "allreduce": 0.5}
# Passes at the master per update besides the optimizer step (centers.py):
# the reply copy; EASGD: get/set weights and the elastic arithmetic.
MASTER_PASSES = {"downpour": 1.0, "sync": 1.0, "easgd": 7.0}
SYNC_MEAN_PASSES_PER_WORKER = 1.5  # mean_of: one add (read 2, write 1) per extra worker
TOP_PASSES = 4.5  # DeltaCenter at the top of a tree: get, add, set, reply
SUB_UPLINK_PASSES = 4.5  # DeltaClient: get + subtract, then set + copy base


@dataclass(frozen=True)
class Params:
    """One configuration of the model (all times in seconds)."""

    compute_s: float  # forward + backward of one batch on one core
    params: int  # model parameters (float32 on the wire)
    batch: int = 32
    apply_s: float = 1e-3  # one optimizer step on the flat vector (master, or every allreduce peer)
    copy_s: float = 1e-4  # one pass over the weights (the master's reply copy)
    local_apply_s: float = 1e-4  # EASGD: a worker's own (Keras SGD) step
    bandwidth: float = 2.5e9  # link bytes/s, each direction
    latency: float = 5e-6  # per message
    master_fixed_s: float = 1e-4  # master loop cost per update apart from the model's size
    worker_fixed_s: float = 5e-4  # worker: per exchange apart from size and latency (polled waits, Python)
    allreduce_fixed_s: float = 2e-4  # a peer's cost per allreduce step apart from size and the allreduce
    allreduce_bandwidth: float | None = None  # the ring's bandwidth (None: the link's); on one node MPI reduces in shared memory
    allreduce_latency: float | None = None
    jitter: float = 0.05  # coefficient of variation of the compute time (log-normal)
    sync_every: int = 1
    upstream_every: int | None = None  # sub-master steps per exchange with the top (None: sync_every, as mpilearn does)
    cores: int | None = None  # None: a core per rank; else ranks share this many cores
    masters: int = 1
    # mpilearn's non-spinning waits (comm.transport.Backoff): a waiting rank tests, then sleeps
    # 20 us, 40 us, ... up to poll_max_s between tests, each sleep overshooting by about sleep_slack_s.
    poll_first_s: float = 2e-5
    poll_max_s: float = 1e-3
    sleep_slack_s: float = 6e-5

    @property
    def bytes(self) -> float:
        return 4.0 * self.params


def notice_delay(waited: float, p: Params) -> float:
    """How late a polling rank notices what happened `waited` seconds after
    it began to wait: the next test of the Backoff schedule (immediate tests,
    then sleeps doubling from poll_first_s to poll_max_s, each plus the
    sleep's overshoot) at or after `waited`."""
    if waited <= 0:
        return 0.0
    t, sleep = 0.0, p.poll_first_s
    while sleep < p.poll_max_s:
        t += sleep + p.sleep_slack_s
        if t >= waited:
            return t - waited
        sleep *= 2
    step = p.poll_max_s + p.sleep_slack_s
    return t + math.ceil((waited - t) / step) * step - waited

