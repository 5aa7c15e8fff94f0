"""CLIP2Video's checkpoints converted: the converted folder against a transcription of CLIP2Video's forward.

The ``ref_*`` functions are written from CLIP2Video's ``modules/modeling.py`` and ``module_cross.py``
(``temporal_difference_block``, ``_similarity_TDB``, ``get_extra_TAB_embedding``, ``get_TAB_embedding``,
``get_inference_logits``) and its ``RawFrameExtractor``, in plain loops: pre-norm residual blocks with
TF-style LayerNorm (epsilon 1e-12) and QuickGELU, the (B, N, N) additive -1e6 mask tiled over heads
with ``repeat``, padded frames embedded as all-zero images, raw tokens into TAB. Checkpoints are state
dicts in CLIP2Video's layout with tiny random weights (the real ones cannot be downloaded here).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from demo.cli import main
from tests.test_parity import random_clip4clip_checkpoint, random_head_state, ref_encode_image, ref_layer_norm

WIDTH, HEADS, LAYERS, CENTRES = 128, 2, 2, 3


def clip2video_checkpoint(tab: bool = True, seed: int = 0) -> dict:
    """A CLIP2Video state dict: the tiny CLIP of test_parity, 2 temporal layers, TDB (sigmoid_selfA), TAB."""
    g = torch.Generator().manual_seed(seed + 10)
    sd = random_clip4clip_checkpoint("meanP", seed)
    sd.update(random_head_state(WIDTH, LAYERS, 77, seed))  # frame_position_embeddings, transformerClip
    for name in ("frame2t_attention", "actionClip") if tab else ("frame2t_attention",):
        block = random_head_state(WIDTH, 1, 77, seed + len(name))
        sd.update({k.replace("transformerClip.", f"{name}."): v for k, v in block.items()
                   if k.startswith("transformerClip.")})
    sd["type_position_embeddings.weight"] = torch.randn(2, WIDTH, generator=g) * 0.5
    sd["trans_layernorm.weight"] = 1 + torch.randn(WIDTH, generator=g) * 0.2
    sd["trans_layernorm.bias"] = torch.randn(WIDTH, generator=g) * 0.2
    if tab:
        sd["weight_center"] = torch.randn(CENTRES, WIDTH, generator=g) * WIDTH ** -0.5
        sd["emb_center"] = torch.randn(CENTRES, WIDTH, generator=g) * 0.1
    return sd


# ------------------------------------------------------------------ CLIP2Video's forward, transcribed


def ref_blocks(x: torch.Tensor, valid: torch.Tensor, sd: dict, prefix: str, layers: int) -> torch.Tensor:
    """TransformerClip over (B, N, D) tokens with (B, N) 0/1 flags: the mask (1 - flag) * -1e6 expanded to
    (B, N, N), tiled to (heads * B, N, N) with ``repeat``, so batch row b, head h reads tile (b * H + h) % B."""
    b, n, d = x.shape
    tiles = ((1.0 - valid.float()) * -1000000.0).unsqueeze(1).expand(b, n, n).repeat(HEADS, 1, 1)
    hd = d // HEADS
    for i in range(layers):
        p = f"{prefix}{i}."
        h = ref_layer_norm(x, sd[p + "ln_1.weight"], sd[p + "ln_1.bias"], 1e-12)
        q, k, v = (h @ sd[p + "attn.in_proj_weight"].t() + sd[p + "attn.in_proj_bias"]).chunk(3, -1)
        out = torch.zeros_like(x)
        for row in range(b):
            for head in range(HEADS):
                cols = slice(head * hd, (head + 1) * hd)
                scores = (q[row, :, cols] / hd ** 0.5) @ k[row, :, cols].t() + tiles[row * HEADS + head]
                out[row, :, cols] = scores.softmax(-1) @ v[row, :, cols]
        x = x + out @ sd[p + "attn.out_proj.weight"].t() + sd[p + "attn.out_proj.bias"]
        h = ref_layer_norm(x, sd[p + "ln_2.weight"], sd[p + "ln_2.bias"], 1e-12)
        h = h @ sd[p + "mlp.c_fc.weight"].t() + sd[p + "mlp.c_fc.bias"]
        x = x + (h * torch.sigmoid(1.702 * h)) @ sd[p + "mlp.c_proj.weight"].t() + sd[p + "mlp.c_proj.bias"]
    return x


def ref_difference_block(frames: torch.Tensor, mask: torch.Tensor, sd: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """temporal_difference_block + the additions of _similarity_TDB: (B, 2T - 1, D) tokens and their flags.
    Frames have type 1 and differences type 0; the difference of frames i and i + 1 attends at position i + 1
    among the differences (flags of frames 1..T-1) and then sits at position i with frame i's flag."""
    t = frames.shape[1]
    pos, kinds = sd["frame_position_embeddings.weight"][:t], sd["type_position_embeddings.weight"]
    dif = ref_blocks(frames[:, 1:] - frames[:, :-1] + pos[1:], mask[:, 1:], sd, "frame2t_attention.resblocks.", 1)
    dif = torch.nn.functional.layer_norm(dif, (dif.shape[-1],), sd["trans_layernorm.weight"],
                                         sd["trans_layernorm.bias"], 1e-5)
    dif = 2 * torch.sigmoid(dif) - 1
    tokens, flags = [], []
    for i in range(t):
        tokens.append(frames[:, i] + pos[i] + kinds[1])
        flags.append(mask[:, i])
        if i < t - 1:
            tokens.append(dif[:, i] + pos[i] + kinds[0])
            flags.append(mask[:, i])
    return torch.stack(tokens, 1), torch.stack(flags, 1)


def ref_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    x = x / x.norm(dim=-1, keepdim=True)
    m = mask.float().unsqueeze(-1)
    pooled = (x * m).sum(1) / m.sum(1).clamp(min=1.0)
    return pooled / pooled.norm(dim=-1, keepdim=True)


def ref_cluster(tokens: torch.Tensor, flags: torch.Tensor, sd: dict) -> torch.Tensor:
    """get_TAB_embedding: soft assignment of raw tokens to the weight centres, flagged residuals to the
    embedding centres summed per centre, each normalised, averaged, normalised."""
    soft = torch.softmax(tokens @ sd["weight_center"].t(), -1)
    per = soft.unsqueeze(-1) * (tokens.unsqueeze(2) - sd["emb_center"])
    per = (per * flags.float()[:, :, None, None]).sum(1)
    per = per / per.norm(dim=-1, keepdim=True)
    out = per.mean(1)
    return out / out.norm(dim=-1, keepdim=True)


def ref_video(frames: torch.Tensor, mask: torch.Tensor, sd: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, D) frame embeddings (padding included) -> the global (_similarity_TDB) and TAB video embeddings."""
    tokens, flags = ref_difference_block(frames, mask, sd)
    out = ref_blocks(tokens, flags, sd, "transformerClip.resblocks.", LAYERS)[:, 0::2] + frames
    large, large_mask = frames[:, 0::2], mask[:, 0::2]
    tokens, flags = ref_difference_block(large, large_mask, sd)
    local = ref_blocks(tokens, flags, sd, "actionClip.resblocks.", 1)[:, 0::2] + large
    aligned = ref_cluster(torch.cat([frames, local], 1), torch.cat([mask, large_mask], 1), sd)
    return ref_mean(out, mask), aligned


def ref_text(ids: torch.Tensor, sd: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """encode_text(return_hidden=True) for (B, L) zero-padded ids: (B, D) end-token features, (B, L, D) all."""
    from tests.test_parity import ref_clip_block

    b, n = ids.shape
    x = sd["clip.token_embedding.weight"][ids] + sd["clip.positional_embedding"][:n]
    causal = torch.full((n, n), float("-inf")).triu(1)
    rows = []
    for row in range(b):
        h = x[row]
        for i in range(2):
            h = ref_clip_block(h, sd, f"clip.transformer.resblocks.{i}.", 2, causal)
        h = torch.nn.functional.layer_norm(h, (h.shape[-1],), sd["clip.ln_final.weight"], sd["clip.ln_final.bias"])
        rows.append(h @ sd["clip.text_projection"])
    hidden = torch.stack(rows)
    return hidden[torch.arange(b), ids.argmax(-1)], hidden


def ref_logits(ids: torch.Tensor, words: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor, sd: dict,
               weight: float = 0.5, per_clip: list | None = None) -> torch.Tensor:
    """get_inference_logits divided by the logit scale: weight * global cosine + (1 - weight) * TAB cosine
    (the video side of the whole batch at once, or ``per_clip``: each clip's as a batch of one)."""
    pooled, hidden = ref_text(ids, sd)
    flags = words.float().clone()
    flags[:, 0] = 0.0
    text_tab = ref_cluster(hidden, flags, sd)
    if per_clip is None:
        video, video_tab = ref_video(frames, mask, sd)
    else:
        video, video_tab = (torch.cat(parts) for parts in zip(*per_clip, strict=True))
    text = pooled / pooled.norm(dim=-1, keepdim=True)
    return weight * text @ video.t() + (1 - weight) * text_tab @ video_tab.t()


# ------------------------------------------------------------------ the converted folder against it

CAPTIONS = ["a dog catches a frisbee on the beach", "a red car", "people dancing in a large hall at night"]


def pixels_and_mask(lengths: tuple[int, ...], seed: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 12, 3, 32, 32) clips, zero pixels after each clip's real frames (CLIP2Video's padding)."""
    g = torch.Generator().manual_seed(seed)
    pixels = torch.zeros(len(lengths), 12, 3, 32, 32)
    mask = torch.zeros(len(lengths), 12, dtype=torch.bool)
    for b, n in enumerate(lengths):
        pixels[b, :n] = torch.randn(n, 3, 32, 32, generator=g)
        mask[b, :n] = True
    return pixels, mask


def converted(tmp_path: Path, tab: bool = True) -> tuple[dict, Path]:
    sd = clip2video_checkpoint(tab)
    torch.save(sd, tmp_path / "pytorch_model.bin.2")
    out = tmp_path / "c2v"
    assert main(["convert", "clip2video", str(tmp_path / "pytorch_model.bin.2"), "--out", str(out)]) == 0
    return sd, out


def reference_inputs(out: Path, pixels: torch.Tensor, sd: dict) -> tuple[dict, torch.Tensor, torch.Tensor,
                                                                         torch.Tensor]:
    """Our tokens, the same ids zero-padded to 32 as CLIP2Video's dataloader gives them, and every frame
    (padding too) through the transcribed OpenAI vision tower."""
    from demo.models.encoders import Clip4ClipEncoder

    tokens = Clip4ClipEncoder.from_pretrained(out, device="cpu").tokenize(CAPTIONS)
    ids = torch.zeros(len(CAPTIONS), 32, dtype=torch.long)
    words = torch.zeros(len(CAPTIONS), 32)
    for row, (t, m) in enumerate(zip(tokens["input_ids"], tokens["attention_mask"], strict=True)):
        ids[row, : int(m.sum())] = t[m.bool()]
        words[row, : int(m.sum())] = 1.0
    with torch.no_grad():
        frames = torch.stack([torch.stack([ref_encode_image(f, sd, 2, 1) for f in clip]) for clip in pixels])
    return tokens, ids, words, frames


def test_converted_clip2video_computes_as_its_inference_logits(tmp_path: Path) -> None:
    from demo.models.clip4clip import Clip4Clip

    sd, out = converted(tmp_path)
    model = Clip4Clip.from_pretrained(out)
    s = model.settings
    assert (s.pooling, s.frame_sampling, s.sample_fps, s.max_frames, s.max_words, s.tab_centres) == \
        ("tdb+tab", "clip2video", 2.5, 12, 32, CENTRES)
    pixels, mask = pixels_and_mask((12, 7, 3, 1))
    tokens, ids, words, frames = reference_inputs(out, pixels, sd)
    with torch.no_grad():
        ours = model.encode_text(tokens["input_ids"], tokens["attention_mask"]) @ model.encode_video(pixels, mask).t()
        per_clip = [ref_video(frames[b:b + 1], mask[b:b + 1], sd) for b in range(len(frames))]
        expected = ref_logits(ids, words, frames, mask, sd, per_clip=per_clip)
    assert (ours - expected).abs().max().item() <= 1e-5
    # This project's own block arithmetic on the same weights is another function (the settings matter).
    own = Clip4Clip.from_pretrained(out, tdb_activation="gelu", tdb_layer_norm_eps=1e-5, tdb_step_position="later",
                                    tdb_step_mask="both", tab_token_norm=True)
    with torch.no_grad():
        theirs = own.encode_text(tokens["input_ids"], tokens["attention_mask"]) @ own.encode_video(pixels, mask).t()
    assert (theirs - expected).abs().max().item() > 1e-3


def test_clip2video_batches_tile_masks_by_head_so_we_compute_clip_by_clip(tmp_path: Path) -> None:
    """CLIP2Video's ``repeat`` gives head h of clip b the mask of clip (b * H + h) mod B: with clips of
    different lengths a clip's embedding depends on its batch; with full clips it does not."""
    sd = clip2video_checkpoint()
    frames = torch.randn(3, 12, WIDTH, generator=torch.Generator().manual_seed(5))
    mixed = torch.tensor([[True] * n + [False] * (12 - n) for n in (12, 5, 2)])
    with torch.no_grad():
        batch = ref_video(frames, mixed, sd)[0]
        alone = torch.cat([ref_video(frames[b:b + 1], mixed[b:b + 1], sd)[0] for b in range(3)])
        assert (batch - alone).abs().max().item() > 1e-3
        full = torch.ones(3, 12, dtype=torch.bool)
        batch = ref_video(frames, full, sd)[0]
        alone = torch.cat([ref_video(frames[b:b + 1], full[b:b + 1], sd)[0] for b in range(3)])
        assert (batch - alone).abs().max().item() <= 1e-5


def test_a_tdb_only_checkpoint_converts_to_a_tdb_head(tmp_path: Path) -> None:
    from demo.models.clip4clip import Clip4Clip

    sd, out = converted(tmp_path, tab=False)
    model = Clip4Clip.from_pretrained(out)
    assert model.settings.pooling == "tdb" and model.embedding_dim() == WIDTH
    pixels, mask = pixels_and_mask((12, 4))
    tokens, ids, words, frames = reference_inputs(out, pixels, sd)
    with torch.no_grad():
        ours = model.encode_video(pixels, mask)
        text = model.encode_text(tokens["input_ids"], tokens["attention_mask"])
        expected = torch.cat([ref_tdb_only(frames[b:b + 1], mask[b:b + 1], sd) for b in range(2)])
        pooled = ref_text(ids, sd)[0]
    assert (ours - expected).abs().max().item() <= 1e-5
    assert (text - pooled / pooled.norm(dim=-1, keepdim=True)).abs().max().item() <= 1e-5


def ref_tdb_only(frames: torch.Tensor, mask: torch.Tensor, sd: dict) -> torch.Tensor:
    tokens, flags = ref_difference_block(frames, mask, sd)
    return ref_mean(ref_blocks(tokens, flags, sd, "transformerClip.resblocks.", LAYERS)[:, 0::2] + frames, mask)


@pytest.mark.parametrize(("change", "message"), [
    ({"frame2t_projection": torch.zeros(4, 4)}, "sigmoid_mlp"),
    ({"drop": "type_position_embeddings.weight"}, "TAB weights without"),
])
def test_the_converter_refuses_what_clip2video_did_not_release(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                change: dict, message: str) -> None:
    sd = clip2video_checkpoint()
    sd.pop(change.pop("drop", ""), None)
    sd.update(change)
    torch.save(sd, tmp_path / "ck.bin")
    assert main(["convert", "clip2video", str(tmp_path / "ck.bin"), "--out", str(tmp_path / "x")]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "x").exists()


# ------------------------------------------------------------------ its frames


def ref_video_to_tensor(jpegs: int, sample_fp: int, max_frame: int) -> list[int]:
    """RawFrameExtractor.video_to_tensor (test mode) on a folder of ``jpegs`` 5-fps frames: which files."""
    current = np.linspace(0, jpegs - 1, num=jpegs // sample_fp, dtype=int)
    if max_frame >= current.shape[0]:
        chosen = np.arange(0, current.shape[0])
    else:
        chosen = np.linspace(0, current.shape[0] - 1, num=max_frame, dtype=int)
    return [int(current[int(i)]) for i in chosen]


@pytest.mark.parametrize("fps", [12.0, 24.0, 25.0, 29.97, 30.0])
def test_clip2video_sampling_thins_the_five_fps_frames_as_its_extractor(fps: float) -> None:
    from demo.video.sampling import clip2video_indices, clip4clip_indices

    for seconds in (0.6, 1.0, 3.3, 4.8, 9.9, 10.0, 13.7, 29.0, 61.2):
        n = int(round(seconds * fps))
        five = clip4clip_indices(n, fps, 5.0, max_frames=n)
        for rate, cap in ((2, 12), (1, 12), (3, 8)):
            expected = five[ref_video_to_tensor(len(five), rate, cap)].tolist()
            assert clip2video_indices(n, fps, rate, cap).tolist() == expected, (n, fps, rate, cap)
