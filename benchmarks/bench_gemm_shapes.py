"""float32 GEMM speed by the shape of the block: thin row blocks against every column of a 50k set, against one
square block (why the precision/recall screen goes by tiles, RESULTS.md).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/bench_gemm_shapes.py
"""

from __future__ import annotations

import time

import torch

D = 2064  # d = 2048 plus the screen's norm columns, padded to a multiple of 16


def gflops(a: torch.Tensor, b: torch.Tensor, repeats: int = 3) -> float:
    a @ b.T  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b.T
    seconds = (time.perf_counter() - start) / repeats
    return 2 * len(a) * len(b) * D / seconds / 1e9


def main() -> None:
    columns = torch.randn(50_000, D)
    for rows in (167, 336, 672, 1344):
        print(f"{rows} rows x 50000 columns: {gflops(torch.randn(rows, D), columns):.1f} GFLOP/s")
    square = torch.randn(2896, D)
    print(f"2896 x 2896 square: {gflops(square, square):.1f} GFLOP/s")


if __name__ == "__main__":
    main()
