"""The measuring side of the benchmarks: `python -m benchmarks.ranks KIND SPEC OUT`.

One module per kind (train, transport, master, steps); `inputs` holds the
models and data they train on, `world` the ranks they run on, `__main__`
the command line.

Started by the harness under `mpiexec` (or as a plain process) with its
thread pools already capped. Rank 0 writes OUT (JSON). Kinds:

- `train`: cases of training throughput, run side by side in one job and
  repeated in rotating order: plain `model.fit` (rank 0 alone; the other
  ranks wait without spinning), `mpilearn.fit` with an algorithm on every
  rank, and PyTorch DistributedDataParallel on every rank.
- `transport`: ping-pong and allreduce bandwidth of mpilearn's Communicator
  against raw mpi4py, and the CPU a waiting rank burns.
- `master`: one master's optimizer step on flat vectors of several sizes,
  with the copy bandwidth of the same process.
"""
