"""sdeval's version, said once: the package metadata (pyproject's dynamic version) and every record read it here."""

__version__ = "0.1.0"
