"""Which GPU each rank of a node uses: a pure function, applied before any
backend is imported (through CUDA_VISIBLE_DEVICES, which torch, JAX and
TensorFlow all honour)."""

from __future__ import annotations

import os
import shutil
import subprocess

VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"


def gpu_for_rank(
    local_rank: int, local_size: int, gpus: int, is_master: bool, master_gpu: bool, node_has_master: bool
) -> int | None:
    """The GPU index for a rank on its node, or None for the CPU.

    Ranks share the node's GPUs round robin by local rank. The master stays
    on the CPU unless `master_gpu`; then its node's workers are numbered
    without it, so that they start from GPU 0 and do not crowd its GPU.
    """
    if gpus <= 0 or local_rank < 0 or local_rank >= local_size:
        return None
    if is_master and not master_gpu:
        return None
    position = local_rank
    if node_has_master and not master_gpu and not is_master:
        position = local_rank - 1  # the master holds local rank 0 and no GPU
    return position % gpus


def gpu_for_world_rank(
    rank: int,
    local_rank: int,
    local_size: int,
    node_ranks: tuple[int, ...],
    gpus: int,
    has_master: bool,
    master_gpu: bool,
) -> int | None:
    """gpu_for_rank for world rank `rank`, the master (if the algorithm has
    one) being world rank 0; `node_ranks` are the world ranks on this node."""
    return gpu_for_rank(
        local_rank, local_size, gpus, has_master and rank == 0, master_gpu, has_master and 0 in node_ranks
    )


def count_gpus() -> int:
    """GPUs visible to this process: CUDA_VISIBLE_DEVICES when set, else nvidia-smi."""
    visible = os.environ.get(VISIBLE_DEVICES)
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in listing.splitlines() if line.startswith("GPU "))


def pin_gpu(index: int | None) -> None:
    """Make only the chosen GPU visible (or none, for the CPU)."""
    visible = os.environ.get(VISIBLE_DEVICES)
    devices = [d.strip() for d in visible.split(",")] if visible else None
    if index is None:
        os.environ[VISIBLE_DEVICES] = "-1" if count_gpus() else os.environ.get(VISIBLE_DEVICES, "")
        if not os.environ[VISIBLE_DEVICES]:
            del os.environ[VISIBLE_DEVICES]
        return
    os.environ[VISIBLE_DEVICES] = devices[index] if devices else str(index)
