"""GPU placement by local rank (no GPU on the test machines: the pure function)."""

from __future__ import annotations

import pytest

from mpilearn.placement import gpu_for_rank, pin_gpu


@pytest.mark.parametrize(
    "local_rank, local_size, gpus, is_master, master_gpu, node_has_master, expected",
    [
        (0, 4, 4, False, False, False, 0),  # a node of workers: one GPU each
        (3, 4, 4, False, False, False, 3),
        (5, 8, 4, False, False, False, 1),  # more ranks than GPUs: round robin
        (0, 3, 2, True, False, True, None),  # the master stays on the CPU ...
        (1, 3, 2, False, False, True, 0),  # ... and its node's workers start at GPU 0
        (2, 3, 2, False, False, True, 1),
        (0, 3, 2, True, True, True, 0),  # --master-gpu
        (1, 3, 2, False, True, True, 1),
        (1, 4, 0, False, False, False, None),  # no GPU: CPU
    ],
)
def test_gpu_for_rank(local_rank, local_size, gpus, is_master, master_gpu, node_has_master, expected) -> None:
    assert gpu_for_rank(local_rank, local_size, gpus, is_master, master_gpu, node_has_master) == expected


def test_pin_gpu_respects_a_given_device_list(monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6")
    pin_gpu(1)
    import os

    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5"
