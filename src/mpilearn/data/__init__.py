"""Data layer: file lists, HDF5 reading, sharding, batching, synthetic data."""
