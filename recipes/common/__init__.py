"""Helpers shared by the recipes: corpus download/lookup with checksums, resumable stages, plots."""
