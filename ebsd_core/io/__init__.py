"""Readers and writers: the project's HDF5 dataset, vendor EBSD files, image folders."""

from ebsd_core.io.dataset import Dataset, read_dataset, write_dataset
from ebsd_core.io.readers import PatternSource, open_patterns

__all__ = ["Dataset", "PatternSource", "open_patterns", "read_dataset", "write_dataset"]
