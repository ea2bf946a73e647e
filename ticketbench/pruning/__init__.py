"""Masks, magnitude scoring and exact-count selection (layer-wise or global)."""
