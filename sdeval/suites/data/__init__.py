"""Built-in suite files (written by `python -m sdeval.suites.build`); a package so that wheels ship them."""
