"""Metrics: one module per metric family; pure functions over features and mergeable states."""
