"""The model's inputs: one configuration (`Params`), the passes over the
weight vector each role makes (counted from the code), and the polling delay
of mpilearn's non-spinning waits."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from mpilearn.flat import bucket_bytes as _bucket_bytes

# Passes over the weight vector a worker makes per exchange, besides its
# compute (clients.py, worker.py): downpour/sync: the NaN check, get_weights
# for the state delta, set_weights and the copy of the base on the reply,
# and zeroing the update buffer; easgd: one more for the elastic step.
# diloco: the NaN check, get_weights, the pseudo-gradient, set_weights and the base copy on the reply, zeroing.
WORKER_PASSES = {"downpour": 4.5, "sync": 4.5, "easgd": 5.5, "diloco": 5.5, "allreduce": 0.5}
# Passes at the master per update besides the optimizer step (centers.py):
# the reply copy; EASGD: get/set weights and the elastic arithmetic.
# DiLoCo: the outer Nesterov step runs as a fused optimizer step on the pseudo-gradient (costed as apply_s), then the reply.
MASTER_PASSES = {"downpour": 1.0, "sync": 1.0, "easgd": 7.0, "diloco": 1.0}
# Algorithms whose workers take local optimizer steps between exchanges.
LOCAL_STEPS = ("easgd", "diloco")
SYNC_MEAN_PASSES_PER_WORKER = 1.5  # mean_of: one add (read 2, write 1) per extra worker
TOP_PASSES = 4.5  # DeltaCenter at the top of a tree: get, add, set, reply
SUB_UPLINK_PASSES = 4.5  # DeltaClient: get + subtract, then set + copy base
SHARD_PASSES = 2.0  # ShardedUplink: the update cut into slices, the replies' slices put together


@dataclass(frozen=True)
class Params:
    """One configuration of the model (all times in seconds)."""

    compute_s: float  # forward + backward of one batch on one core
    # Part of a batch's time that takes no CPU (an emulated model that sleeps; a GPU).
    sleep_s: float = 0.0
    params: int = 1_000_000  # model parameters (float32 on the wire)
    batch: int = 32
    apply_s: float = 1e-3  # one optimizer step on the flat vector (master, or every allreduce peer)
    copy_s: float = 1e-4  # one pass over the weights (the master's reply copy)
    local_apply_s: float = 1e-4  # EASGD: a worker's own (Keras SGD) step
    bandwidth: float = 2.5e9  # link bytes/s, each direction
    latency: float = 5e-6  # per message
    master_fixed_s: float = 1e-4  # master loop cost per update apart from the model's size
    worker_fixed_s: float = 5e-4  # worker: per exchange apart from size and latency (polled waits, Python)
    allreduce_fixed_s: float = 2e-4  # a peer's cost per allreduce step apart from size and the allreduce
    allreduce_bandwidth: float | None = (
        None  # the ring's bandwidth (None: the link's); on one node MPI reduces in shared memory
    )
    allreduce_latency: float | None = None
    jitter: float = 0.05  # coefficient of variation of the compute time (log-normal)
    sync_every: int = 1
    upstream_every: int | None = None  # sub-master steps per exchange with the top (None: sync_every, as mpilearn does)
    cores: int | None = None  # None: a core per rank; else ranks share this many cores
    masters: int = 1
    # Sharded parameter servers: the weights split into this many slices, each on its own server rank
    # with its own links; a worker exchanges with all of them at once, each exchange costing it server_fixed_s more.
    servers: int = 1
    server_fixed_s: float = 5e-5
    # One server's optimizer step and pass over its slice (None: apply_s and copy_s over servers;
    # measured curves give them at the slice's size, where fixed costs do not shrink).
    server_apply_s: float | None = None
    server_copy_s: float | None = None
    # A worker's own optimizer step (DiLoCo's inner step, and the solo baseline); None: apply_s.
    worker_apply_s: float | None = None
    # A worker's reset of its gradient buffer each batch (None: half a pass at copy_s; on a GPU, device memory).
    worker_reset_s: float | None = None
    # The worker's network link is modelled too (a network preset): it carries all slices of its exchanges.
    worker_link: bool = False
    # MPI's allreduce: "ring" (2(p-1) latency steps) or "rabenseifner" (MPICH's choice: recursive halving and
    # doubling, 2 log2(p) latency steps, the same bytes); "hierarchical": a shared-memory reduce among
    # ranks_per_node ranks, Rabenseifner across nodes, a shared-memory broadcast.
    allreduce_algorithm: str = "ring"
    # mpilearn's allreduce reduces its gradients in buckets of bucket_mb MiB (--bucket-mb; None: its auto
    # size), each started as backward finishes it (torch gradient hooks): communication hides behind the
    # last pass's backward (backward_fraction of compute_s), all but the last bucket's. 0: one allreduce
    # after the pass.
    bucket_mb: float | None = None
    backward_fraction: float = 2 / 3
    ranks_per_node: int = 4
    # mpilearn's non-spinning waits (comm.transport.Backoff): a waiting rank tests, then sleeps
    # 20 us, 40 us, ... up to poll_max_s between tests, each sleep overshooting by about sleep_slack_s.
    poll_first_s: float = 2e-5
    poll_max_s: float = 1e-3
    sleep_slack_s: float = 6e-5
    # On one node as the emulation measures it (node.py): each wait spins for spin_s first (Backoff's spin;
    # 0: not modelled), a sleeping wait's tests cost poll_cpu of a core, and a large message is copied
    # once, by its receiver, at copy_bandwidth (None: node.py is not used).
    spin_s: float = 0.0
    poll_cpu: float = 0.0
    copy_bandwidth: float | None = None
    server_copy_bandwidth: float | None = None  # a server's copy of its slice (None: copy_bandwidth)

    @property
    def bytes(self) -> float:
        return 4.0 * self.params

    @property
    def bucket_bytes(self) -> float:
        return _bucket_bytes(self.bytes, self.bucket_mb)

    @property
    def shard_bytes(self) -> float:
        """Bytes of one server's slice of a message."""
        return self.bytes / self.servers

    @property
    def slice_apply_s(self) -> float:
        return self.apply_s / self.servers if self.server_apply_s is None else self.server_apply_s

    @property
    def slice_copy_s(self) -> float:
        return self.copy_s / self.servers if self.server_copy_s is None else self.server_copy_s

    @property
    def own_apply_s(self) -> float:
        return self.apply_s if self.worker_apply_s is None else self.worker_apply_s

    @property
    def reset_s(self) -> float:
        return WORKER_PASSES["allreduce"] * self.copy_s if self.worker_reset_s is None else self.worker_reset_s


def notice_delay(waited: float, p: Params) -> float:
    """How late a polling rank notices what happened `waited` seconds after
    it began to wait: the next test of the Backoff schedule (immediate tests,
    then sleeps doubling from poll_first_s to poll_max_s, each plus the
    sleep's overshoot) at or after `waited`."""
    if waited <= p.spin_s:
        return 0.0
    if p.spin_s:
        return notice_delay(waited - p.spin_s, replace(p, spin_s=0.0))
    t, sleep = 0.0, p.poll_first_s
    while sleep < p.poll_max_s:
        t += sleep + p.sleep_slack_s
        if t >= waited:
            return t - waited
        sleep *= 2
    step = p.poll_max_s + p.sleep_slack_s
    return t + math.ceil((waited - t) / step) * step - waited
