"""The Vendi score (Friedman & Dieng 2023, "The Vendi Score: A Diversity Evaluation Metric for Machine Learning"):
the exponential of the Shannon entropy of the eigenvalues of K / n, K the similarity matrix of n images. It reads as
an effective number of distinct images: 1 when all are the same, n when all are orthogonal.

The kernel is the cosine similarity of CLIP image embeddings (the linear kernel of L2-normalised rows, the reference
package's `score_dual(X, normalize=True)`), so K / n = X X^T / n shares its non-zero spectrum with X^T X / n: the
smaller of the two is decomposed (no n x n matrix for a large set). q = 1 (the paper's default order).

Per prompt, over that prompt's images (its seeds), the score says how much one prompt's images vary: the metric's
value is the mean over prompts with 2+ images. Over all the images of a cell it says how much the model's output
varies as a whole (a second key).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def normalised(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length in float64 (rows of zeros stay zero, as sklearn's `normalize` leaves them)."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def vendi_from_gram(gram: np.ndarray, n: int) -> float:
    """exp(-Σ λ log λ) over the positive eigenvalues λ of `gram` / n (gram: X^T X or X X^T of normalised rows)."""
    w = np.linalg.eigvalsh(np.asarray(gram, dtype=np.float64) / n)
    w = w[w > 0]
    return float(np.exp(-(w * np.log(w)).sum()))


def vendi_score(x: np.ndarray) -> float:
    """The Vendi score of rows `x` [n, d] under the cosine kernel."""
    u = normalised(x)
    n, d = u.shape
    if n == 0:
        raise ValueError("the Vendi score needs at least one image")
    return vendi_from_gram(u.T @ u if d < n else u @ u.T, n)


@dataclass(frozen=True)
class PromptVendi:
    prompt: int  # index of the prompt
    n_images: int
    score: float | None  # None: fewer than 2 images


def per_prompt(x: np.ndarray, prompt_of: np.ndarray) -> list[PromptVendi]:
    """The Vendi score of each prompt's rows of `x` (prompt_of[i]: row i's prompt), in order of first appearance."""
    prompt_of = np.asarray(prompt_of)
    out = []
    for prompt in dict.fromkeys(prompt_of.tolist()):
        rows = np.flatnonzero(prompt_of == prompt)
        out.append(PromptVendi(int(prompt), len(rows), vendi_score(x[rows]) if len(rows) >= 2 else None))
    return out


class VendiSide:
    """The Vendi score of all the rows, and with each block of rows left out (the jackknife side of `vendi_all`),
    from one Gram matrix: with fewer rows than dimensions the n x n Gram of the rows, a leave-out its kept rows'
    submatrix; else X^T X, a leave-out that minus the block's X^T X. Either way each leave-out is one eigvalsh of
    the smaller size (at 2048-d Inception features and a few hundred images, no 2048 x 2048 decomposition)."""

    def __init__(self, x: np.ndarray, blocks: np.ndarray, k: int) -> None:
        u = normalised(x)
        blocks = np.asarray(blocks, dtype=np.int64)
        self.n, d = u.shape
        by_rows = self.n <= d
        self.gram = u @ u.T if by_rows else u.T @ u
        counts = np.bincount(blocks, minlength=k)
        self.leave_outs = np.empty(k)
        for j in range(k):
            out = blocks == j
            if by_rows:
                kept = np.flatnonzero(~out)
                gram = self.gram[np.ix_(kept, kept)]
            else:
                gram = self.gram - u[out].T @ u[out]
            self.leave_outs[j] = vendi_from_gram(gram, self.n - int(counts[j]))

    def value(self) -> float:
        return vendi_from_gram(self.gram, self.n)
