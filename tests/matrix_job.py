"""Run under `mpiexec -n 2`: train one model with every algorithm in turn,
in one process per rank, so a backend is imported and started once for the
whole row of the backend x algorithm matrix.

    python matrix_job.py OUT_DIR ALGO[,ALGO...] TRAIN_OPTION...

Each algorithm's run directory is OUT_DIR/ALGO.
"""

import sys

from mpilearn.cli.main import main

# EASGD's workers take local steps with their own optimizer: Adam at a small
# rate learns within two short epochs, plain SGD at the default rate does not.
EXTRA = {"easgd": ["--worker-optimizer", "adam", "--elastic-lr", "0.002"]}

out_dir, algorithms, options = sys.argv[1], sys.argv[2].split(","), sys.argv[3:]
for algorithm in algorithms:
    status = main(
        ["train", *options, "--algo", algorithm, "--run-dir", f"{out_dir}/{algorithm}", *EXTRA.get(algorithm, [])]
    )
    if status:
        sys.exit(status)
