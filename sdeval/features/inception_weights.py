"""Which file the standard Inception-v3 weights are: names, size, sha256 and download URL, without loading torch.

features/inception.py checks and downloads them; `sdeval models` names them in its help and table.
"""

from __future__ import annotations

#: torch-fidelity's download URL for them (its URL_INCEPTION_V3; tests/test_offline.py pins the two together): said
#: here so that a run whose features are all cached never imports torch-fidelity.
URL_INCEPTION_V3 = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)
#: The standard weights under torch-fidelity's name, then under pytorch-fid's: the same bytes, either is accepted.
STANDARD_WEIGHTS_NAMES = (URL_INCEPTION_V3.rsplit("/", 1)[-1], "pt_inception-2015-12-05-6726825d.pth")
STANDARD_WEIGHTS_SIZE = 95_628_359
STANDARD_WEIGHTS_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
