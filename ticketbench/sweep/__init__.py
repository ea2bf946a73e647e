"""Sweeps: a grid of tasks x seeds x arms (or methods) as jobs, run by an executor: local
processes (``local``) or a SLURM cluster through submitit (``slurm``)."""
