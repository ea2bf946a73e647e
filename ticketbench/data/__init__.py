"""Datasets: readers of the official formats, a hash-checked download cache, device tensors."""

from ticketbench.data.store import load_arrays
from ticketbench.data.tensors import BatchStream, DeviceSplit, make_split, task_split
from ticketbench.errors import DataError

__all__ = ["BatchStream", "DataError", "DeviceSplit", "load_arrays", "make_split", "task_split"]
