"""The contract every communicator passes: the MPI one (comm/transport.py) and
the in-process one (comm/local.py), as Optuna holds every storage to
`optuna/testing/pytest_storages.py`.

Each case is a function of one rank's communicator, run on every rank of a
job of 2 or 3 ranks: in threads by tests/test_comm_contract.py, and under
`mpiexec -n N python -m pytest tests/comm_contract.py` on the MPI world (the
test at the bottom). Every rank runs the same cases in the same order.
"""

from __future__ import annotations

import numpy as np
import pytest

from mpilearn.comm import WaitTimeout
from mpilearn.comm.transport import ANY_SOURCE, ANY_TAG

LIMIT_S = 30.0  # a wait that should complete at once, bounded so a broken implementation fails instead of hanging


def ranks_are_distinct_and_counted(comm) -> None:
    gathered = comm.gather_object((comm.rank, comm.size), root=0)
    if comm.rank == 0:
        assert gathered == [(r, comm.size) for r in range(comm.size)]
    else:
        assert gathered is None
    assert comm.world_size >= comm.size and 0 <= comm.local_rank < comm.local_size and comm.rank in comm.node_ranks


def buffers_go_round_a_ring(comm) -> None:
    right, left = (comm.rank + 1) % comm.size, (comm.rank - 1) % comm.size
    out = np.arange(5, dtype=np.float32) + 10 * comm.rank
    into = np.zeros(5, dtype=np.float32)
    receive = comm.irecv(into, source=left, tag=3)
    send = comm.isend(out, right, 3)
    status = comm.wait(receive, LIMIT_S)
    comm.wait(send, LIMIT_S)
    np.testing.assert_array_equal(into, np.arange(5, dtype=np.float32) + 10 * left)
    assert status.Get_source() == left and status.Get_tag() == 3


def messages_between_two_ranks_keep_their_order(comm) -> None:
    if comm.rank == 0:
        for value in (1.0, 2.0, 3.0):
            comm.send(np.full(2, value, dtype=np.float32), 1, int(value))
    elif comm.rank == 1:
        seen = []
        for _ in range(3):
            into = np.zeros(2, dtype=np.float32)
            status = comm.recv(into, source=0, tag=ANY_TAG)
            seen.append((float(into[0]), status.Get_tag()))
        assert seen == [(1.0, 1), (2.0, 2), (3.0, 3)]
    comm.barrier()


def a_receive_takes_only_its_tag(comm) -> None:
    if comm.rank == 0:
        comm.send(np.full(1, 5, dtype=np.float32), 1, 5)
        comm.send(np.full(1, 7, dtype=np.float32), 1, 7)
    elif comm.rank == 1:
        seven, five = np.zeros(1, dtype=np.float32), np.zeros(1, dtype=np.float32)
        comm.wait(comm.irecv(seven, source=0, tag=7), LIMIT_S)  # the tag-5 message, sent first, waits meanwhile
        comm.wait(comm.irecv(five, source=0, tag=5), LIMIT_S)
        assert (seven[0], five[0]) == (7, 5)
    comm.barrier()


def wait_any_returns_a_completed_request_and_skips_null_ones(comm) -> None:
    if comm.rank == 0:
        buffers = [np.zeros(3, dtype=np.float32) for _ in range(comm.size)]
        requests = [comm.NULL_REQUEST] + [comm.irecv(buffers[r], source=r, tag=1) for r in range(1, comm.size)]
        seen = set()
        for _ in range(comm.size - 1):
            index, status = comm.wait_any(requests, LIMIT_S)
            assert index not in seen and index != 0 and status.Get_source() == index
            np.testing.assert_array_equal(buffers[index], np.full(3, index, dtype=np.float32))
            seen.add(index)
            requests[index] = comm.NULL_REQUEST
        assert seen == set(range(1, comm.size))
    else:
        comm.send(np.full(3, comm.rank, dtype=np.float32), 0, 1)
    comm.barrier()


def wait_all_returns_statuses_in_request_order(comm) -> None:
    if comm.rank == 0:
        buffers = [np.zeros(2, dtype=np.float32) for _ in range(1, comm.size)]
        requests = [comm.irecv(b, source=r, tag=4) for r, b in zip(range(1, comm.size), buffers)]
        statuses = comm.wait_all(requests, LIMIT_S)
        assert [s.Get_source() for s in statuses] == list(range(1, comm.size))
        assert [float(b[0]) for b in buffers] == [float(r) for r in range(1, comm.size)]
    else:
        comm.send(np.full(2, comm.rank, dtype=np.float32), 0, 4)
    comm.barrier()


def large_sends_complete_under_every_wait(comm) -> None:
    """Sends big enough that their wait spins for the expected transfer time
    (comm/transport.py, SEND_SPIN_BYTES_PER_S) complete under wait, wait_any and
    wait_all (with a receive among the requests), and arrive whole."""
    floats = 3_000_000  # 12 MB: above the 10 MB from which a send's spin outlasts the usual 2 ms
    if comm.rank == 0:
        out = np.arange(floats, dtype=np.float32)
        comm.wait(comm.isend(out, 1, 4), LIMIT_S)
        index, _ = comm.wait_any([comm.NULL_REQUEST, comm.isend(out + 1, 1, 5)], LIMIT_S)
        assert index == 1
        back = np.zeros(2, dtype=np.float32)
        comm.wait_all([comm.isend(out + 2, 1, 6), comm.irecv(back, source=1, tag=7)], LIMIT_S)
        assert back[0] == 7
    elif comm.rank == 1:
        into = np.zeros(floats, dtype=np.float32)
        for tag in (4, 5, 6):
            if tag == 6:
                comm.wait(comm.isend(np.full(2, 7, dtype=np.float32), 0, 7), LIMIT_S)
            status = comm.recv(into, source=0, tag=tag)
            assert status.Get_tag() == tag and into[0] == tag - 4 and into[-1] == floats - 1 + tag - 4
    comm.barrier()


def a_wait_that_gets_nothing_times_out_naming_what_is_pending(comm) -> None:
    if comm.rank == 0:
        late = np.zeros(1, dtype=np.float32)
        request = comm.irecv(late, source=1, tag=9)
        with pytest.raises(WaitTimeout):
            comm.wait(request, 0.05)
        with pytest.raises(WaitTimeout) as raised:
            comm.wait_all([comm.NULL_REQUEST, request], 0.05)
        assert raised.value.pending == [1]
        comm.barrier()  # now rank 1 sends, and the receive completes
        comm.wait(request, LIMIT_S)
        assert late[0] == 9
    else:
        comm.barrier()
        if comm.rank == 1:
            comm.send(np.full(1, 9, dtype=np.float32), 0, 9)
    comm.barrier()


def broadcasts_and_gathers_reach_every_rank(comm) -> None:
    root = comm.size - 1
    array = np.arange(4, dtype=np.float32) if comm.rank == root else np.zeros(4, dtype=np.float32)
    comm.bcast_array(array, root=root)
    np.testing.assert_array_equal(array, np.arange(4, dtype=np.float32))
    obj = comm.bcast_object({"from": comm.rank, "list": [1, 2]} if comm.rank == root else None, root=root)
    assert obj == {"from": root, "list": [1, 2]}
    gathered = comm.gather_object(f"rank {comm.rank}", root=root)
    assert gathered == ([f"rank {r}" for r in range(comm.size)] if comm.rank == root else None)


def back_to_back_gathers_keep_their_parts_apart(comm) -> None:
    """A rank that answered the first gather may send its part of the next one before the root
    has heard from everyone: each part must land in its own gather (the end of a run gathers the
    monitor records, then the timeline)."""
    import time

    if comm.rank == comm.size - 1:
        time.sleep(0.3)  # the last rank answers late, so the others' second parts arrive first
    first = comm.gather_object(("first", comm.rank), root=0)
    second = comm.gather_object(("second", comm.rank), root=0)
    if comm.rank == 0:
        assert first == [("first", r) for r in range(comm.size)]
        assert second == [("second", r) for r in range(comm.size)]


def allreduce_sums_every_rank_in_place(comm) -> None:
    buffer = np.array([1.0, 2.0, 0.5], dtype=np.float32) * (comm.rank + 1)
    comm.allreduce_sum(buffer, "none", LIMIT_S)
    total = sum(range(1, comm.size + 1))
    np.testing.assert_array_equal(buffer, np.array([1.0, 2.0, 0.5], dtype=np.float32) * total)
    mean = np.full(3, float(comm.rank), dtype=np.float32)
    comm.allreduce_mean(mean, "fp16", LIMIT_S)
    np.testing.assert_allclose(mean, np.full(3, (comm.size - 1) / 2), rtol=1e-3)


def bucketed_allreduces_sum_each_view_in_place(comm) -> None:
    """Buckets of one flat buffer reduced by nonblocking allreduces under way at once, each in its own format."""
    flat = np.arange(10, dtype=np.float32) * (comm.rank + 1)
    buckets = [flat[6:], flat[2:6], flat[:2]]  # the tail first, as gradients become ready in backward
    reductions = [comm.start_allreduce_sum(b, c) for b, c in zip(buckets, ("none", "fp16", "bf16"))]
    reductions[-1].test()  # polling drives progress; it may or may not be complete yet
    comm.wait_reductions(reductions, LIMIT_S)
    assert all(r.test() for r in reductions)
    # Small integers: exact in fp16 and bf16 too.
    np.testing.assert_array_equal(flat, np.arange(10, dtype=np.float32) * sum(range(1, comm.size + 1)))


def objects_arrive_from_any_source(comm) -> None:
    if comm.rank == 0:
        assert comm.poll_object(source=ANY_SOURCE, tag=6) is None  # nothing sent yet with tag 6
    comm.barrier()
    if comm.rank == 0:
        got = sorted((comm.recv_object(source=ANY_SOURCE, tag=6) for _ in range(comm.size - 1)), key=lambda g: g[1])
        assert got == [({"rank": r}, r, 6) for r in range(1, comm.size)]
    else:
        comm.wait(comm.isend_object({"rank": comm.rank}, 0, 6), LIMIT_S)
    comm.barrier()


def split_orders_ranks_by_key_within_each_color(comm) -> None:
    color = comm.rank % 2
    part = comm.split(color, key=-comm.rank)  # reversed order inside each color
    members = [r for r in range(comm.size) if r % 2 == color]
    assert part.size == len(members)
    assert part.rank == sorted(members, reverse=True).index(comm.rank)
    gathered = part.gather_object(comm.rank, root=0)
    if part.rank == 0:
        assert gathered == sorted(members, reverse=True)
    value = np.ones(1, dtype=np.float32)
    part.allreduce_sum(value, "none", LIMIT_S)
    assert value[0] == part.size
    comm.barrier()


CASES = [
    ranks_are_distinct_and_counted,
    buffers_go_round_a_ring,
    messages_between_two_ranks_keep_their_order,
    a_receive_takes_only_its_tag,
    wait_any_returns_a_completed_request_and_skips_null_ones,
    wait_all_returns_statuses_in_request_order,
    large_sends_complete_under_every_wait,
    a_wait_that_gets_nothing_times_out_naming_what_is_pending,
    broadcasts_and_gathers_reach_every_rank,
    back_to_back_gathers_keep_their_parts_apart,
    allreduce_sums_every_rank_in_place,
    bucketed_allreduces_sum_each_view_in_place,
    objects_arrive_from_any_source,
    split_orders_ranks_by_key_within_each_color,
]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_mpi_communicator(case) -> None:
    """Collected only when pytest runs this file under mpiexec (see test_comm_contract.py)."""
    from mpilearn.comm import world

    comm = world()
    case(comm)
    comm.barrier()
