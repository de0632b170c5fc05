"""`sdeval log`: a results file into an experiment tracker (MLflow, Weights & Biases, TensorBoard), each tracker an
optional extra (docs/trackers.md). log.py holds `log_results`; the package imports nothing itself, so the command
table loads no report or statistics code to list `log`."""
