"""Feature extractors (Inception via torch-fidelity, CLIP via open_clip), preprocessing, feature cache."""
