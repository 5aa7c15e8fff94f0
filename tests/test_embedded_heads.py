"""The shipped model's numbers do not move when head arithmetic becomes a setting.

``clip4clip-world``'s ``clip4clip.json`` names none of the settings that carry CLIP2Video's or
MMAction2's arithmetic (``tdb_*``, ``tab_token_norm``, ``frame_mean``), so its heads keep computing
as they did. ``data/embedded_heads.npz`` holds :func:`outputs` as the code before those settings
computed it (commit 3f11468: ``git archive 3f11468 demo | tar -x -C OLD`` then
``PYTHONPATH=OLD python -c "from tests.test_embedded_heads import save; save()"`` from the project root).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from demo.presets import PRECOMPUTED

GOLDEN = Path(__file__).parent / "data" / "embedded_heads.npz"
CAPTIONS = ["a red square moving left", "a small blue circle grows on a striped background", "two shapes"]


def outputs() -> dict[str, np.ndarray]:
    """Caption embeddings and every shipped head's video embedding of seeded random pixels (one clip padded)."""
    from demo.models.encoders import Clip4ClipEncoder

    torch.manual_seed(0)
    enc = Clip4ClipEncoder.from_pretrained(PRECOMPUTED / "clip4clip-world", device="cpu")
    model, s = enc.model, enc.model.settings
    frames = torch.randn(3, s.max_frames, 3, enc.image_size, enc.image_size)
    mask = torch.ones(3, s.max_frames, dtype=torch.bool)
    mask[1, 3:] = False
    out = {"texts": enc.encode_texts(CAPTIONS)}
    with torch.inference_mode():
        for pooling in ("meanP", "seqTransf", "tdb", "tdb+tab"):
            out[pooling] = model.encode_video(frames, mask, pooling).numpy()
    return out


def save() -> None:
    np.savez(GOLDEN, **outputs())


def test_the_shipped_heads_give_the_same_bits_as_before() -> None:
    from demo.models.clip4clip import checkpoint_settings
    from demo.models.temporal import Clip4ClipSettings

    stored = checkpoint_settings(str(PRECOMPUTED / "clip4clip-world"))
    default = Clip4ClipSettings()
    for name in ("tdb_activation", "tdb_layer_norm_eps", "tdb_step_position", "tdb_step_mask", "tab_token_norm",
                 "frame_mean"):
        assert getattr(stored, name) == getattr(default, name), name
    golden = np.load(GOLDEN)
    now = outputs()
    assert sorted(golden.files) == sorted(now)
    for key in golden.files:
        np.testing.assert_array_equal(now[key], golden[key], err_msg=key)
