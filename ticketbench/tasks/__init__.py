"""Benchmark task definitions, one YAML file per task (package data)."""
