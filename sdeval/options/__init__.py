"""What a scoring run is asked for: ScoreOptions and its one validating reader for the command line and config files
(score.py), and the click options several commands share, with their defaults read from those dataclasses (cli.py).
Below score and reference, so both commands read options the same way."""
