"""What an embedding depends on: a model's name and the settings its vectors were made with.

An index manifest and the evaluation cache record a :class:`ModelFingerprint`; loading
compares it with the model at hand, so vectors from incomparable models never mix. A local
model is named by :func:`model_name` (folder name plus a hash of its weights), so a model
retrained in the same folder is told apart from the one an index was built with.

Nothing here loads a model: index readers import this module without torch.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# The files whose bytes tell two trainings apart: the CLIP towers, and the seqTransf head
# (``demo.models.temporal.HEAD_FILE``, named here rather than imported: that module loads torch).
WEIGHT_FILES = ("model.safetensors", "temporal_head.safetensors")


@dataclass(frozen=True)
class ModelFingerprint:
    """What an embedding depends on; stored in the manifest, exposed by encoders as ``.fingerprint``."""

    model: str  # hub id or folder; compared by its last path component (see ``conflicts``)
    pooling: str  # "meanP", "seqLSTM", "seqTransf", ...
    dim: int  # embedding width D
    image_size: int  # frame side S fed to the vision tower
    frames: int  # max frames per clip (0: no cap)
    sample_fps: float  # frames sampled per second before thinning to ``frames``
    sampling: str = "float-fps"  # which frames: demo.models.temporal.SAMPLINGS
    resize: str = "decoder"  # how frames reach the model's size: demo.models.temporal.RESIZES

    def describe(self) -> str:
        return f"model {self.model!r} ({self.pooling}, {self.dim}-d)"

    def conflicts(self, other: ModelFingerprint) -> list[str]:
        """Fields that make the two models' embeddings incomparable.

        The model is compared by its last path component so ``precomputed/clip4clip``,
        its absolute path, and a local copy of a hub model in a folder of the same name
        all match. Frame settings are not conflicts: they change how a clip is sampled,
        not which space the text and video embeddings live in.
        """
        out = []
        if not _same_model(self.model, other.model):
            out.append("model")
        return out + [f for f in ("pooling", "dim") if getattr(self, f) != getattr(other, f)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelFingerprint:
        return cls(
            model=str(d["model"]),
            pooling=str(d["pooling"]),
            dim=int(d["dim"]),
            image_size=int(d["image_size"]),
            frames=int(d["frames"]),
            sample_fps=float(d["sample_fps"]),
            # Manifests written before these were recorded came from this project's own pipeline.
            sampling=str(d.get("sampling", "float-fps")),
            resize=str(d.get("resize", "decoder")),
        )


def _same_model(a: str, b: str) -> bool:
    """Compare model names by their last path component; ``name@hash`` (a local folder
    with a weights hash, see :func:`model_name`) must match exactly when both sides carry
    a hash, and by name otherwise."""
    name_a, _, hash_a = Path(a.rstrip("/\\")).name.partition("@")
    name_b, _, hash_b = Path(b.rstrip("/\\")).name.partition("@")
    return name_a == name_b and (not hash_a or not hash_b or hash_a == hash_b)


def model_name(id_or_dir: str | Path) -> str:
    """How an index manifest names a model: the hub id, or a local folder's name
    plus a short hash of its weights (so a retrained model in the same folder is
    told apart from the one an index was built with)."""
    folder = Path(id_or_dir)
    if not folder.is_dir():
        return str(id_or_dir)
    digest = hashlib.sha256()
    for name in WEIGHT_FILES:
        path = folder / name
        if path.is_file():
            with path.open("rb") as f:
                digest.update(f.read(1 << 20))  # the first MiB differs between any two trainings
            digest.update(str(path.stat().st_size).encode())
    return f"{folder.resolve().name}@{digest.hexdigest()[:10]}"
