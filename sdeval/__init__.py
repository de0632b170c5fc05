"""sdeval: quality evaluation for text-to-image diffusion models."""

from __future__ import annotations

__version__ = "0.1.0"
