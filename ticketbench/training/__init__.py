"""Lightning module, the pruning/rewinding callback, one level of training, and the IMP loop."""
