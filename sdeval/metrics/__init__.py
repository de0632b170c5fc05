"""Metrics: one module per family, pure functions over features, with mergeable state where it applies."""
