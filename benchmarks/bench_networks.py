"""Per-image time of the networks alone (no decode, no I/O): the floor of any scoring pass.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_networks.py --clip-model ViT-B-32

Random weights (speed does not depend on weight values), batch 32, best of 3 timed batches after one
warm-up. Inception as torch-fidelity builds it (batch norms kept) and as sdeval runs it (folded,
channels_last); the CLIP image tower as open_clip builds it, which both sides of bench_text.py run.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from pathlib import Path

import open_clip
import torch
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

from sdeval.features.inception import InceptionExtractor
from sdeval.features.random_weights import save_random_inception_weights


def ms_per_image(fn, batch: torch.Tensor, repeats: int = 3) -> float:
    with torch.inference_mode():
        fn(batch)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            fn(batch)
            best = min(best, time.perf_counter() - start)
    return 1000 * best / len(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip-model", default="ViT-B-32")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    logging.getLogger().setLevel(logging.ERROR)
    n = args.batch_size
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "inception.pth"
        save_random_inception_weights(weights, seed=0)
        library = FeatureExtractorInceptionV3(
            "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(weights)
        ).eval()
        uint8 = torch.randint(0, 256, (n, 3, 299, 299), dtype=torch.uint8)
        ours = InceptionExtractor(weights)
        floats = uint8.float().contiguous(memory_format=torch.channels_last)
        folded = ms_per_image(ours.network.forward_resized, floats)
        rows = [
            ("Inception, torch-fidelity's network (uint8 in)", ms_per_image(library, uint8)),
            ("Inception, sdeval (batch norms folded, channels_last)", folded),
        ]
    clip = open_clip.create_model(args.clip_model, pretrained=None).eval()
    size = clip.visual.image_size
    size = size if isinstance(size, tuple) else (size, size)
    rows.append((f"CLIP {args.clip_model} image tower", ms_per_image(clip.encode_image, torch.randn(n, 3, *size))))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {n}\n")
    print("| network | ms per image |\n| --- | ---: |")
    for name, ms in rows:
        print(f"| {name} | {ms:.1f} |")


if __name__ == "__main__":
    main()
