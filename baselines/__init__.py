"""Baseline pruning methods, each one file written against ``ticketbench.pruning.methods`` and
registered through this project's ``ticketbench.methods`` entry points, as a user's package would be."""
