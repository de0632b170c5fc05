"""The LAION improved aesthetic predictor v2: a linear MLP on the L2-normalised OpenAI CLIP ViT-L/14 image embedding.

As its simple_inference.py: `sac+logos+ava1-l14-linearMSE.pth` (keys `layers.{0,2,4,6,7}.*`) applied to the image
embedding of OpenAI's ViT-L/14 (QuickGELU, 224 px, bicubic resize + centre crop), normalised to unit length.
The CLIP part is sdeval's ClipEmbedder (its embeddings are already L2-normalised), so it can be the very
embedder the CLIP score uses: pass it as `embedder=`, and the features are computed and cached once (same
`cache_key`, feature name `clip_image`). Prompts are ignored.

The head is given as a local file (.safetensors, or .pth with allow_pickle), an https URL (the default: the
original file on GitHub, kept in sdeval's cache after one download), or a hub file OWNER/REPO/FILE.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from sdeval.core.errors import SdevalError
from sdeval.core.hashing import file_sha256
from sdeval.features.clip import CLIP_SCORE_MODEL, FEATURE_NAME, ClipEmbedder
from sdeval.preference.base import check_prompts, no_model_error
from sdeval.preference.info import AESTHETIC as INFO
from sdeval.preference.info import DescribedScorer
from sdeval.preference.mlp import RewardMLP, head_input_size
from sdeval.preference.weights import load_strict, read_state_file, resolve_file

AESTHETIC_URL = INFO.default_model
#: The CLIP model the head was trained on: OpenAI ViT-L/14 (the CLIP score's default model too).
AESTHETIC_CLIP = CLIP_SCORE_MODEL
# Bump when what score_embeddings() returns changes for the same files.
_SCORER_VERSION = 1


class AestheticScorer(DescribedScorer, info=INFO):
    """LAION aesthetic predictor v2: an MLP head on normalised CLIP ViT-L/14 image embeddings; prompts ignored."""

    feature_name = FEATURE_NAME

    def __init__(
        self,
        head: RewardMLP,
        embedder: ClipEmbedder,
        *,
        source: str,
        weights_sha256: str,
    ) -> None:
        if head.in_features != embedder.embed_dim:
            raise SdevalError(
                f"aesthetic head {source} takes {head.in_features}-d CLIP embeddings, but CLIP model "
                f"{embedder.name} ({embedder.pretrained}) gives {embedder.embed_dim}-d ones; the LAION head needs "
                f"{AESTHETIC_CLIP.name} with {AESTHETIC_CLIP.pretrained} weights"
            )
        self.head: RewardMLP | None = head.to(embedder.device).eval()
        self.embedder = embedder
        self.device = embedder.device
        self.source = source
        self.weights_sha256 = weights_sha256
        # extract() is the embedder's: its features and their cache are shared with the CLIP metrics.
        self.cache_key = embedder.cache_key
        self.text_cache_key = f"{self.name}-no-text"

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        model: str | None = None,
        *,
        clip_model: str = AESTHETIC_CLIP.name,
        clip_pretrained: str | None = AESTHETIC_CLIP.pretrained,
        embedder: ClipEmbedder | None = None,
        device: str | torch.device = "cpu",
        allow_pickle: bool = False,
        batch_size: int = 32,
    ) -> AestheticScorer:
        """The head from a file, URL or hub file (default: the original .pth, which needs allow_pickle) and the
        CLIP model: `embedder` when given (shared with the CLIP metrics), else ClipEmbedder.load(clip_*)."""
        hint = "download sac+logos+ava1-l14-linearMSE.pth once and pass its path as --aesthetic-model PATH"
        path, label = resolve_file(model or AESTHETIC_URL, what="aesthetic head", hint=hint, allow_pickle=allow_pickle)
        state = read_state_file(path, allow_pickle=allow_pickle, what="aesthetic head")
        head = RewardMLP(head_input_size(state))
        load_strict(head, state, what="aesthetic head", source=str(path))
        if embedder is None:
            embedder = ClipEmbedder.load(clip_model, clip_pretrained, device=device, batch_size=batch_size)
        return cls(head, embedder, source=label, weights_sha256=file_sha256(path))

    # -- EmbeddingScorer -------------------------------------------------------------------------

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        """One decoded HxWx3 uint8 image to the CLIP model's input (the ClipEmbedder's transform)."""
        return self.embedder.preprocess(rgb)

    def extract(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """{'clip_image': L2-normalised float32 [N, D] CLIP image embeddings}: the ClipEmbedder's features."""
        if len(batch) == 0:
            return {FEATURE_NAME: torch.zeros((0, self.embedder.embed_dim), dtype=torch.float32)}
        return self.embedder.extract(batch)

    def embed_texts(self, prompts: Sequence[str]) -> np.ndarray:
        """float32 [len(prompts), 0]: the aesthetic score reads no prompt."""
        return np.zeros((len(check_prompts(prompts)), 0), dtype=np.float32)

    def score_embeddings(self, image_emb: np.ndarray, text_emb: np.ndarray | None = None) -> np.ndarray:
        """float64 [N] head outputs for L2-normalised CLIP image embeddings; `text_emb` is ignored."""
        head = self._require_head()
        image = np.asarray(image_emb, dtype=np.float32)
        if image.ndim != 2 or image.shape[1] != head.in_features:
            raise ValueError(f"aesthetic head takes [N, {head.in_features}] embeddings, got {image.shape}")
        with torch.inference_mode():
            scores = head(torch.from_numpy(image).to(self.device))
        return scores.float().cpu().numpy().astype(np.float64)

    def score(self, batch: torch.Tensor, prompts: Sequence[str] | None = None) -> np.ndarray:
        """float64 [N] aesthetic scores of a preprocessed batch (prompts, if given, are ignored)."""
        if prompts is not None:
            check_prompts(prompts, len(batch))
        return self.score_embeddings(self.extract(batch)[FEATURE_NAME].numpy())

    def protocol(self) -> dict[str, Any]:
        """The head's file and sha256, and the CLIP embedder's own protocol (model, weights, preprocessing)."""
        return {
            "scorer": self.name,
            "scorer_version": _SCORER_VERSION,
            "model": self.source,
            "weights_sha256": self.weights_sha256,
            "head": "LAION improved aesthetic predictor MLP (linear, 5 layers)",
            "clip": self.embedder.protocol(),
            "score": "mlp(normalize(clip_image_embedding))",
            "dtype": "float32",
            "torch_version": torch.__version__,
        }

    # -- internals -------------------------------------------------------------------------------

    def _require_head(self) -> RewardMLP:
        if self.head is None:
            raise no_model_error(self.name)
        return self.head

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["head"] = None  # the embedder drops its own model when pickled
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
