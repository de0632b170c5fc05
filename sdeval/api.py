"""The Python API: score a folder, score images held in memory, or stream images from a training loop.

    from sdeval import Evaluator, score_folder, score_images

    results = score_folder("out/", reference="ref.npz", metrics=["fid", "clip"])  # as `sdeval score`
    results = score_images(images, prompts, reference="ref.npz", metrics=["fid", "clip"])

    evaluator = Evaluator(metrics=["fid", "kid", "clip"], reference="ref.npz")
    for images, prompts in batches:             # uint8 HxWx3 arrays, PIL images, or float tensors in [0, 1]
        evaluator.update(images, prompts)
    results = evaluator.compute()               # the results document `sdeval score` writes

Every function returns the results document of `sdeval score` (docs/formats.md), made by the same code: the
in-memory path builds the same per-image part a folder run builds (features, prompts, preference scores), so the
numbers equal the command's on the same images. Under torch.distributed (DDP) each rank updates with its own
images and `compute()` gathers every rank's images exactly (no padding, no duplicates) and returns the same
document on every rank, as torchmetrics does.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from sdeval.core.devices import resolve_device
from sdeval.core.distributed import DistContext, from_group
from sdeval.core.errors import SdevalError
from sdeval.features.extract import FolderFeatures, unique_extractors
from sdeval.metrics import registry
from sdeval.metrics.registry import Need
from sdeval.options.score import ScoreOptions, options_from_mapping
from sdeval.prompts.lookup import ImagePrompts
from sdeval.prompts.record import PromptRecord
from sdeval.score.grouping import group_folder
from sdeval.score.preference import is_embedding, score_preferences

#: What the in-memory path cannot do: it keeps no pixels after `update`.
_NOT_IN_MEMORY = {
    Need.JUDGEMENTS: "adherence and robustness judge the pixels against a suite: write the images and use score_folder",
    Need.INIT_IMAGES: "faithfulness compares outputs with init images on disk: use score_folder",
}


def score_folder(
    images: str | Path,
    *,
    reference: str | Path | None = None,
    metrics: Sequence[str] | None = None,
    progress: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """`sdeval score IMAGES` from Python: `options` are the command's by their long names with underscores
    (`kid_subset_size=...`, `clip_model=...`, `ci=0.95`, `no_cache=True`, ...); returns the results document."""
    from sdeval.score.run import score  # torch-fidelity, torchvision, the models: when scoring, not on import

    chosen = options_from_mapping(options, images=str(images), reference=None if reference is None else str(reference),
                                  metrics=tuple(metrics) if metrics else None, where="option",
                                  progress=progress)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the results carry their own warnings
        return score(chosen)


def score_images(
    images: Iterable[Any],
    prompts: Sequence[str | None] | None = None,
    *,
    ids: Sequence[str | None] | None = None,
    reference: str | Path | None = None,
    metrics: Sequence[str] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Score images held in memory (see `Evaluator.update` for what an image may be); returns the results document."""
    evaluator = Evaluator(metrics=metrics, reference=reference, sync=False, **options)
    evaluator.update(images, prompts, ids=ids)
    return evaluator.compute()


class Evaluator:
    """A streaming scorer for training loops: `update` with batches, `compute` the results, `reset` to start again.

    Models and the reference load once, at construction. Each `update` runs the models on its images at once and
    keeps only their features (and scores), never the pixels. With `sync` (the default) and a torch.distributed
    group up, `compute` gathers every rank's images and returns the same results on every rank.
    """

    def __init__(
        self,
        metrics: Sequence[str] | None = None,
        *,
        reference: str | Path | None = None,
        name: str = "evaluator",
        sync: bool = True,
        **options: Any,
    ) -> None:
        # torch-fidelity, torchvision and the models' modules (+1.3 s beside torch): when scoring, not on import
        from sdeval.reference.build import load_any_reference, reference_share
        from sdeval.score.models import RunModels  # torch-fidelity, torchvision: when scoring
        from sdeval.score.prepare import _needs_of  # torch-fidelity, torchvision: when scoring

        self.options: ScoreOptions = options_from_mapping(
            options, images=name, reference=None if reference is None else str(reference),
            metrics=tuple(metrics) if metrics else None, where="option", progress=False,
        )  # fmt: skip
        self.name = name
        self.sync = sync
        specs = registry.check_names(self.options.requested)
        self.needs = _needs_of(specs, self.options)
        for need, why in _NOT_IN_MEMORY.items():
            if need in self.needs:
                names = ", ".join(spec.name for spec in specs if need in spec.needs)
                raise SdevalError(f"Evaluator cannot score {names} ({why})")
        ctx = from_group()
        local_rank = int(os.environ.get("LOCAL_RANK", ctx.rank))
        self.device = torch.device(resolve_device(self.options.features.device, local_rank, ctx.world_size))
        self.models = RunModels.for_metrics(specs, self.needs, self.options, self.device)
        self.reference = None
        if self.options.reference is not None and any(spec.needs_reference for spec in specs):
            needs = self.models.reference_needs(self.options.reference)
            if sync and ctx.world_size > 1 and Path(self.options.reference).is_dir():
                # Each rank extracts its share of a reference folder; compute() gathers the shares with the images.
                inputs = {need.name: need.extractor for need in needs}
                share = (ctx.rank, ctx.world_size)
                self.reference = reference_share(self.options.reference, inputs, self.options.features, share)
            else:
                self.reference = load_any_reference(self.options.reference, needs, self.options.features)
        self.reset()

    def reset(self) -> None:
        """Forget every image seen (the models and the reference stay)."""
        self._features: dict[str, dict[str, list[np.ndarray]]] = {}
        self._hashes: list[str] = []
        self._records: list[Any] = []
        self._pair_scores: dict[str, list[float]] = {}

    @property
    def n(self) -> int:
        """Images seen on this process since the last reset."""
        return len(self._hashes)

    def update(
        self,
        images: Iterable[Any],
        prompts: Sequence[str | None] | None = None,
        *,
        ids: Sequence[str | None] | None = None,
    ) -> None:
        """Add images: uint8 HxWx3 arrays (or HxW, RGBA), PIL images, or torch tensors (uint8, or float in [0, 1];
        CHW or HWC; a 4-d tensor is a batch), with their prompts (None: no prompt) and prompt ids (item keys)."""
        rgbs = [as_rgb(image) for image in images]  # a 4-d tensor or array iterates over its images
        prompts = list(prompts) if prompts is not None else [None] * len(rgbs)
        ids = list(ids) if ids is not None else [None] * len(rgbs)
        if len(prompts) != len(rgbs) or len(ids) != len(rgbs):
            raise SdevalError(f"update: {len(rgbs)} images, {len(prompts)} prompts and {len(ids)} ids: one each")
        if not rgbs:
            return
        for extractor in unique_extractors(self.models.extractors):
            batch = torch.stack([extractor.preprocess(rgb) for rgb in rgbs])
            out = extractor.extract(batch)
            store = self._features.setdefault(extractor.cache_key, {})
            for feature, values in out.items():
                store.setdefault(feature, []).extend(values.numpy().astype(np.float32, copy=True))
        for name, scorer in self.models.preference.items():
            if is_embedding(scorer):
                continue  # from the features, in compute()
            scores = self._pair_scores.setdefault(name, [])
            for start in range(0, len(rgbs), self.options.features.batch_size):
                chunk = range(start, min(start + self.options.features.batch_size, len(rgbs)))
                known = [i for i in chunk if prompts[i] is not None or not scorer.prompt_relative]
                values = dict.fromkeys(chunk, float("nan"))
                if known:
                    batch = torch.stack([scorer.preprocess(rgbs[i]) for i in known])
                    found = scorer.score(batch, [prompts[i] or "" for i in known])
                    values.update(zip(known, (float(v) for v in np.asarray(found, dtype=np.float32)), strict=True))
                scores.extend(values[i] for i in chunk)
        for rgb, prompt, pid in zip(rgbs, prompts, ids, strict=True):
            self._hashes.append(hashlib.sha256(f"{rgb.shape}".encode() + rgb.tobytes()).hexdigest())
            record = None if prompt is None else PromptRecord(prompt=str(prompt), source="api", id=pid)
            self._records.append(record)

    def compute(self) -> dict[str, Any]:
        """The results document of every image seen (on every rank, when synced)."""
        # torch-fidelity, torchvision and the models' modules (+1.3 s beside torch): when scoring, not on import
        from sdeval.score.part import merge_parts
        from sdeval.score.run import score_part  # torch-fidelity, torchvision: when scoring

        ctx = from_group() if self.sync else DistContext()
        totals = ctx.all_gather(self.n)
        part = self._part(ctx.rank, ctx.world_size, sum(totals))
        parts = ctx.all_gather(part)
        if sum(totals) == 0:
            raise SdevalError("Evaluator.compute: no image was given to update()")
        merged = merge_parts(parts) if ctx.world_size > 1 else part
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return score_part(self.options, merged).document

    def log_to(
        self, to: str, results: dict[str, Any] | None = None, *, step: int | None = None, **destination: Any
    ) -> str:
        """Log `results` (default: `compute()` now, on every rank) to `to` (mlflow, wandb, tensorboard) at `step`,
        from rank 0 only; into the script's active MLflow or W&B run when there is one. `destination`: the fields
        of sdeval.trackers.log.LogOptions (run_name, experiment, tracking_uri, logdir, ...; no report by default).
        Returns where the run is, in words ("" on the other ranks). docs/trackers.md."""
        from sdeval.trackers.log import LogOptions, log_document  # the trackers and their libraries: on use

        document = self.compute() if results is None else results
        if self.sync and from_group().rank != 0:
            return ""
        return log_document(document, LogOptions(to=to, step=step, **{"make_report": False, **destination}))

    def _part(self, rank: int, world: int, total: int) -> Any:
        from sdeval.score.prepare import make_part, texts_block  # torch-fidelity, torchvision: when scoring

        prefix = f"rank{rank:03d}-" if world > 1 else ""
        paths = [f"{prefix}{i:08d}" for i in range(self.n)]  # update order is sorted order
        features = {key: {f: np.stack(rows) for f, rows in arrays.items()} for key, arrays in self._features.items()}
        generated = FolderFeatures(self.name, paths, list(self._hashes), features, [], self.n, total)
        prompts = None
        if any(record is not None for record in self._records) or Need.PROMPTS in self.needs:
            missing = [{"path": path, "reason": "no prompt given to update()"}
                       for path, record in zip(paths, self._records, strict=True) if record is None]  # fmt: skip
            prompts = ImagePrompts(list(self._records), missing, [], None)
        texts = None
        if Need.CLIP_TEXT in self.needs:
            texts = texts_block(self.models, prompts, self.options.features.cache_dir)
        preference = None
        if self.models.preference:
            embedding = {k: v for k, v in self.models.preference.items() if is_embedding(v)}
            found_scores = score_preferences(embedding, generated, prompts, self.options.features.cache_dir,
                                             self.options.features.batch_size, False)  # fmt: skip
            for name, values in self._pair_scores.items():
                found_scores.scores[name] = np.asarray(values, dtype=np.float64)
                found_scores.missing[name] = {
                    i: f"no prompt: {name} scores an image against its prompt"
                    for i, value in enumerate(values)
                    if np.isnan(value)
                }
            preference = {"scores": found_scores.scores, "missing": found_scores.missing}
        source = group_folder(self.name, paths, self._records, self.options.group_by).source
        return make_part(self.options, self.models, self.reference, generated, source, shard=(rank, world),
                         n_total=total, prompts=prompts, texts=texts, preference=preference,
                         warnings=list(self.models.warnings))  # fmt: skip


# -- images in memory --------------------------------------------------------------------------------------------


def as_rgb(image: Any) -> np.ndarray:
    """An image as sdeval decodes a file: HxWx3 uint8 RGB (alpha dropped, grey repeated); float tensors and arrays
    in [0, 1] are rounded to 8 bits, as a PNG of them would be."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and min(array.shape[1:]) > 4:
        array = array.transpose(1, 2, 0)  # CHW -> HWC (channels first: a few channels, then a real height and width)
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.floating):
            raise SdevalError(f"an image must be uint8, or float in [0, 1]; got {array.dtype}")
        if not np.all(np.isfinite(array)) or array.min(initial=0.0) < 0.0 or array.max(initial=0.0) > 1.0:
            raise SdevalError("a float image must hold values in [0, 1] (NaN, infinity or out of range found)")
        array = np.round(array * 255.0).astype(np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4) or array.shape[0] < 1 or array.shape[1] < 1:
        raise SdevalError(f"an image must be HxW, HxWx1, HxWx3 or HxWx4 (or CHW), got shape {array.shape}")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array[:, :, :3])
