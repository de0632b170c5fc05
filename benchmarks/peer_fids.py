"""How far apart the peers' FIDs are on your folders: each peer's own code against sdeval on that peer's route.

    python benchmarks/peer_fids.py GEN REF [--inception-weights FILE] [--json OUT]

Runs torch-fidelity, pytorch-fid and torchmetrics as the packages run (their own loaders, resizes and statistics)
and clean-fid's clean mode (its resizer and statistics; its network is handed the same Inception weights, since
its own TorchScript file cannot be fetched offline: `--clean-fid-own-model` uses it where it can be), then sdeval
with `--protocol` of each peer. Prints each FID, sdeval's relative difference from the peer on the same route, and
each peer's relative difference from torch-fidelity's (what choosing a tool changes). The standard weights are
those torch-fidelity, pytorch-fid and torchmetrics share; without them (offline) pass any weights file of that
layout (the tests use random weights: the numbers then mean nothing, the agreement still does).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def _torch_fidelity(gen: str, ref: str, weights: str) -> float:
    import torch_fidelity

    found = torch_fidelity.calculate_metrics(input1=gen, input2=ref, cuda=False, fid=True, verbose=False,
                                             feature_extractor_weights_path=weights, save_cpu_ram=True)  # fmt: skip
    return float(found["frechet_inception_distance"])


def _pytorch_fid(gen: str, ref: str, weights: str) -> float:
    from pytorch_fid.fid_score import calculate_fid_given_paths

    home = Path(tempfile.mkdtemp(prefix="torch-home-"))
    try:
        target = home / "hub" / "checkpoints" / "pt_inception-2015-12-05-6726825d.pth"
        target.parent.mkdir(parents=True)
        shutil.copyfile(weights, target)  # where pytorch-fid's loader looks for its weights
        old = os.environ.get("TORCH_HOME")
        os.environ["TORCH_HOME"] = str(home)
        try:
            # batch size 1: pytorch-fid stacks a batch, so images of several sizes need batches of one
            return float(calculate_fid_given_paths([gen, ref], 1, "cpu", 2048, num_workers=0))
        finally:
            os.environ.pop("TORCH_HOME") if old is None else os.environ.__setitem__("TORCH_HOME", old)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _torchmetrics(gen: str, ref: str, weights: str) -> float:
    import numpy as np
    import torch
    from PIL import Image
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=weights)
    for folder, real in ((ref, True), (gen, False)):
        for path in sorted(Path(folder).iterdir()):
            if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp", ".bmp"):
                image = np.asarray(Image.open(path).convert("RGB"))
                metric.update(torch.from_numpy(image).permute(2, 0, 1)[None], real=real)  # one at a time: any size
    return float(metric.compute())


def _clean_fid(gen: str, ref: str, weights: str, own_model: bool) -> float:
    import torch
    from cleanfid import fid

    from sdeval.features.inception import POOL, InceptionExtractor

    if own_model:
        return float(fid.compute_fid(gen, ref, mode="clean", num_workers=0, verbose=False))
    extractor = InceptionExtractor(weights, preprocess="clean")

    class Float299(torch.nn.Module):  # clean-fid hands its model float 0..255 batches at 299 x 299
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return extractor.extract(x)[POOL]

    return float(fid.compute_fid(gen, ref, mode="clean", custom_feat_extractor=Float299(), device=torch.device("cpu"),
                                 num_workers=0, batch_size=16, verbose=False))  # fmt: skip


def _sdeval(gen: str, ref: str, weights: str, protocol: str) -> float:
    from sdeval import score_folder

    results = score_folder(gen, reference=ref, metrics=["fid"], protocol=protocol, inception_weights=weights,
                           workers=0, no_cache=True, progress=False)  # fmt: skip
    return float(results["cells"][0]["metrics"]["fid"]["value"])


def compare(gen: str, ref: str, weights: str, clean_fid_own_model: bool = False) -> list[dict[str, Any]]:
    """One row per peer: its FID, sdeval's on its route, their relative difference, and the peer against
    torch-fidelity."""
    peers = {
        "torch-fidelity": lambda: _torch_fidelity(gen, ref, weights),
        "clean-fid": lambda: _clean_fid(gen, ref, weights, clean_fid_own_model),
        "pytorch-fid": lambda: _pytorch_fid(gen, ref, weights),
        "torchmetrics": lambda: _torchmetrics(gen, ref, weights),
    }
    rows = [
        {"peer": name, "peer_fid": run(), "sdeval_fid": _sdeval(gen, ref, weights, name)} for name, run in peers.items()
    ]
    base = rows[0]["peer_fid"]
    for row in rows:
        row["sdeval_vs_peer"] = abs(row["sdeval_fid"] / row["peer_fid"] - 1)
        row["peer_vs_torch_fidelity"] = abs(row["peer_fid"] / base - 1)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gen")
    parser.add_argument("ref")
    parser.add_argument("--inception-weights", default=None, help="default: the standard weights (torch.hub cache)")
    parser.add_argument("--clean-fid-own-model", action="store_true", help="clean-fid's own TorchScript Inception")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args()
    from sdeval.features.inception import find_standard_weights

    weights = args.inception_weights or str(find_standard_weights() or "")
    if not weights:
        parser.error("no standard Inception weights in torch.hub's cache: pass --inception-weights FILE")
    rows = compare(args.gen, args.ref, weights, args.clean_fid_own_model)
    print(f"{'peer':<16}{'peer FID':>14}{'sdeval FID':>14}{'sdeval vs peer':>16}{'peer vs torch-fidelity':>24}")
    for r in rows:
        print(f"{r['peer']:<16}{r['peer_fid']:>14.6f}{r['sdeval_fid']:>14.6f}{r['sdeval_vs_peer']:>16.1e}"
              f"{r['peer_vs_torch_fidelity']:>24.2%}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
