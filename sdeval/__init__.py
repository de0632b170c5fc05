"""sdeval: quality evaluation for text-to-image diffusion models.

The Python API (sdeval/api.py): `score_folder`, `score_images` and the streaming `Evaluator`; each returns the
results document `sdeval score` writes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sdeval.core.version import __version__

if TYPE_CHECKING:  # for type checkers only: at run time __getattr__ imports them on first use
    from sdeval.api import Evaluator, score_folder, score_images

__all__ = ["Evaluator", "__version__", "score_folder", "score_images"]
_API = ("Evaluator", "score_folder", "score_images")


def __getattr__(name: str) -> Any:
    """The API loads torch and the models' libraries only when it is used (`import sdeval` stays instant)."""
    if name in _API:
        from sdeval import api  # torch: on first use of the API, not with `import sdeval` or the CLI

        return getattr(api, name)
    raise AttributeError(f"module 'sdeval' has no attribute {name!r}")
