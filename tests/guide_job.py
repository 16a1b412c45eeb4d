"""Run under `mpiexec -n 3` in a scratch directory: the commands of the
README and the guide that tests/test_docs.py runs for real, one after the
other in one process per rank, so Keras and torch start once for all.

    python guide_job.py STEPS.json

STEPS.json is a list of ["mpilearn", ARGV] (`mpilearn ARGV` on every rank;
under mpiexec a command's -n is its launcher's, as for users) and
["python", SCRIPT] (a script run on every rank). Rank 0 prints
`step N: done` after each, so a failure names its step.
"""

import json
import runpy
import sys

from mpilearn.cli.main import main
from mpilearn.comm import world

steps = json.loads(open(sys.argv[1]).read())
rank = world().rank
for number, (kind, what) in enumerate(steps):
    if kind == "python":
        runpy.run_path(what, run_name="__main__")
    else:
        status = main(what)
        if status:
            print(f"step {number}: mpilearn {' '.join(what)} ended with status {status}", flush=True)
            sys.exit(status)
    if rank == 0:
        print(f"step {number}: done", flush=True)
