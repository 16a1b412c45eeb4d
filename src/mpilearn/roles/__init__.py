"""The loops each rank runs: solo, master, worker."""
