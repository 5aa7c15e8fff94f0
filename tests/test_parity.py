"""Our pipeline against transcriptions of the reference code's arithmetic, one test per difference.

Each ``ref_*`` helper below is written from the description of what the reference does (CLIP4Clip's
``RawVideoExtractorCV2`` and dataloaders, its ``seqTransf`` blocks and multi-sentence metrics; the
Searchium WebVid notebook; ``XCLIPProcessor``), deliberately in plain numpy / PIL / torch loops, and
our code is checked against it:

1. frame resizing: PIL bicubic resize of the full RGB frame, centre crop, CLIP mean/std;
2. frame sampling: CLIP4Clip's whole-number fps and floor thinning; the notebook's every-second frames;
3. video -> text with several captions a video: CLIP4Clip's best-caption-against-best-caption figure;
4. seqTransf blocks: QuickGELU, LayerNorm epsilon 1e-12, additive -1e6 mask, via the converter;
5. X-CLIP inputs: what ``XCLIPProcessor(videos=...)`` gives for the same frames.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from demo.evaluate.metrics import chunked_v2t_group_ranks, chunked_v2t_ranks, metrics_from_ranks
from demo.models.temporal import Clip4ClipSettings, SeqTransfHead
from demo.video.decode import probe, read_frames
from demo.video.mp4 import write_mp4
from demo.video.preprocess import CLIP_MEAN, CLIP_STD, load_clip4clip_clip
from demo.video.sampling import clip4clip_indices, every_second_indices, reference_indices

# ------------------------------------------------------------------ reference transcriptions


def ref_extractor_frames(frame_count: int, fps: float, sample_fp: int = 1) -> list[int]:
    """CLIP4Clip's RawVideoExtractorCV2: OpenCV's fps cut to an int; for each second from 0 to
    ceil(count / fps) inclusive, seek to second * fps + each offset, stop at the first failed read."""
    f = int(fps)
    total_duration = (frame_count + f - 1) // f
    interval = f // sample_fp if sample_fp > 0 else 1
    interval = interval or 1
    offsets = list(range(0, f, interval))[:sample_fp]
    read_ok, taken = True, []
    for second in range(0, total_duration + 1):
        if not read_ok:
            break
        for offset in offsets:
            position = second * f + offset
            read_ok = position < frame_count  # cap.read() fails past the last frame
            if not read_ok:
                break
            taken.append(position)
    return taken


def ref_dataloader_slice(frames: list[int], max_frames: int) -> list[int]:
    """CLIP4Clip's dataloader with slice_framepos=2: uniform thinning, indices cast to int (floor)."""
    if max_frames < len(frames):
        return [frames[i] for i in np.linspace(0, len(frames) - 1, num=max_frames, dtype=int)]
    return frames


def ref_clip_transform(frame: np.ndarray, size: int) -> np.ndarray:
    """torchvision's Resize(size, BICUBIC) + CenterCrop(size) + ToTensor + Normalize(CLIP) on a PIL image,
    as CLIP4Clip's extractor and the Searchium notebook apply them: -> (3, size, size) float32."""
    from PIL import Image

    image = Image.fromarray(frame).convert("RGB")
    w, h = image.size
    if w < h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    image = image.resize((new_w, new_h), Image.BICUBIC)
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    image = image.crop((left, top, left + size, top + size))
    x = np.asarray(image, dtype=np.float32) / np.float32(255.0)
    x = (x - np.asarray(CLIP_MEAN, np.float32)) / np.asarray(CLIP_STD, np.float32)
    return x.transpose(2, 0, 1)


def ref_layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """CLIP4Clip's TF-style LayerNorm: epsilon inside the square root."""
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return weight * (x - mean) / torch.sqrt(var + eps) + bias


def ref_attention(x: torch.Tensor, sd: dict, p: str, heads: int, additive: torch.Tensor) -> torch.Tensor:
    """Multi-head self-attention from packed in-projection weights, with an additive (T, T) mask."""
    t, d = x.shape
    q, k, v = (x @ sd[p + "attn.in_proj_weight"].t() + sd[p + "attn.in_proj_bias"]).chunk(3, dim=-1)
    hd = d // heads
    q, k, v = (z.reshape(t, heads, hd).transpose(0, 1) for z in (q, k, v))
    scores = (q / math.sqrt(hd)) @ k.transpose(1, 2) + additive
    out = (scores.softmax(-1) @ v).transpose(0, 1).reshape(t, d)
    return out @ sd[p + "attn.out_proj.weight"].t() + sd[p + "attn.out_proj.bias"]


def ref_seqtransf(frames: torch.Tensor, mask: torch.Tensor, sd: dict, layers: int, heads: int) -> torch.Tensor:
    """CLIP4Clip's seqTransf for ONE clip: (T, D) unnormalised frame embeddings, (T,) mask -> (D,).

    Frame positions added; -1e6 on masked keys; pre-norm blocks with TF LayerNorm (eps 1e-12) and
    QuickGELU MLP; residual to the input; every frame normalised, masked mean, normalised."""
    t = frames.shape[0]
    x = frames + sd["frame_position_embeddings.weight"][:t]
    additive = ((1.0 - mask.float()) * -1000000.0).unsqueeze(0).expand(t, t)
    for i in range(layers):
        p = f"transformerClip.resblocks.{i}."
        x = x + ref_attention(ref_layer_norm(x, sd[p + "ln_1.weight"], sd[p + "ln_1.bias"], 1e-12), sd, p, heads,
                              additive)
        h = ref_layer_norm(x, sd[p + "ln_2.weight"], sd[p + "ln_2.bias"], 1e-12)
        h = h @ sd[p + "mlp.c_fc.weight"].t() + sd[p + "mlp.c_fc.bias"]
        h = h * torch.sigmoid(1.702 * h)
        x = x + (h @ sd[p + "mlp.c_proj.weight"].t() + sd[p + "mlp.c_proj.bias"])
    x = x + frames
    x = x / x.norm(dim=-1, keepdim=True)
    m = mask.float().unsqueeze(-1)
    pooled = (x * m).sum(0) / m.sum(0).clamp(min=1.0)
    return pooled / pooled.norm()


def ref_compute_metrics(x: np.ndarray) -> dict[str, float]:
    """CLIP4Clip's compute_metrics on a (queries, candidates) matrix, ground truth on the diagonal
    (sort-based: exact when there are no ties, which random float scores never have)."""
    sx = np.sort(-x, axis=1)
    d = np.diag(-x)[:, None]
    ind = np.where(sx - d == 0)[1]
    return {"R@1": 100.0 * np.mean(ind == 0), "R@5": 100.0 * np.mean(ind < 5), "R@10": 100.0 * np.mean(ind < 10),
            "MdR": float(np.median(ind) + 1), "MnR": float(np.mean(ind) + 1)}


def ref_v2t_multi_sentence(sim: np.ndarray, caption_video: np.ndarray) -> dict[str, float]:
    """CLIP4Clip's multi-sentence video -> text: captions stacked per video into (V, max_caps, V) padded
    with -inf, the max over each video's captions, transposed so rows are query videos, compute_metrics."""
    v = sim.shape[1]
    groups = [np.flatnonzero(caption_video == i) for i in range(v)]
    stacked = np.full((v, max(len(g) for g in groups), v), -np.inf)
    for i, g in enumerate(groups):
        stacked[i, : len(g)] = sim[g]
    return ref_compute_metrics(stacked.max(axis=1).T)


# -------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def textured_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3.2 s, 10 fps, 96 x 160 clip of fine texture that changes every frame."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:96, 0:160]
    frames = []
    for t in range(32):
        stripes = 127 + 100 * np.sin((x + 3 * t) * 1.3) * np.cos(y * 0.9)
        noise = rng.normal(0, 25, size=(96, 160, 3))
        rgb = np.stack([stripes, np.roll(stripes, t, axis=1), 255 - stripes], -1) + noise
        frames.append(np.clip(rgb, 0, 255).astype(np.uint8))
    path = tmp_path_factory.mktemp("parity") / "textured.mp4"
    write_mp4(path, np.stack(frames), 10.0)
    return path


# ------------------------------------------------------------------ 1. frame resizing


def test_reference_resize_equals_pil_bicubic_of_the_full_frame(textured_clip: Path) -> None:
    info = probe(textured_clip)
    idx = ref_dataloader_slice(ref_extractor_frames(info.num_frames, info.fps), 12)
    full = read_frames(textured_clip, idx)  # full resolution, as OpenCV reads them
    assert full.shape[1:3] == (96, 160)
    expected = np.stack([ref_clip_transform(f, 32) for f in full])
    frames, mask = load_clip4clip_clip(textured_clip, 32, sampling="clip4clip", resize="pil-bicubic")
    assert int(mask.sum()) == len(idx)
    np.testing.assert_allclose(frames[: len(idx)].numpy(), expected, atol=1e-6)
    # The decoder-scaled path (the embedded models' own) is measurably another input.
    scaled, _ = load_clip4clip_clip(textured_clip, 32, sampling="clip4clip", resize="decoder")
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    grey_levels = ((scaled[: len(idx)] - frames[: len(idx)]) * std).abs().mean().item() * 255
    assert grey_levels > 1.0


# ------------------------------------------------------------------ 2. frame sampling

RATES = (1.5, 7.5, 12.0, 23.976, 24.0, 25.0, 29.97, 30.0, 50.0, 59.94)
DURATIONS = (0.05, 0.5, 1.0, 1.02, 3.3, 11.9, 12.0, 12.5, 13.0, 29.0, 61.7, 240.0)


@pytest.mark.parametrize("fps", RATES)
def test_clip4clip_sampling_matches_the_extractor_and_dataloader(fps: float) -> None:
    for seconds in DURATIONS:
        n = max(1, int(round(seconds * fps)))
        for sample_fp, cap in ((1, 12), (1, 64), (2, 12), (3, 24)):
            expected = ref_dataloader_slice(ref_extractor_frames(n, fps, sample_fp), cap)
            assert reference_indices(n, fps, sample_fp, cap).tolist() == expected, (n, fps, sample_fp, cap)


@pytest.mark.parametrize("fps", RATES)
def test_every_second_sampling_matches_the_notebook(fps: float) -> None:
    for seconds in DURATIONS:
        n = max(1, int(round(seconds * fps)))
        assert every_second_indices(n, fps).tolist() == ref_extractor_frames(n, fps, 1), (n, fps)


def test_the_old_rule_picks_other_frames_where_the_issue_says() -> None:
    """Clips over 12 s, and most clips at 29.97 fps, got other frames from our float-fps rule."""
    assert clip4clip_indices(int(20 * 30), 30.0).tolist() != reference_indices(int(20 * 30), 30.0).tolist()
    assert clip4clip_indices(int(8 * 29.97), 29.97).tolist() != reference_indices(int(8 * 29.97), 29.97).tolist()
    assert clip4clip_indices(300, 30.0).tolist() == reference_indices(300, 30.0).tolist()  # 10 s at 30 fps agree


def test_every_second_encoder_is_the_notebooks_mean_of_frame_embeddings(tiny_clip4clip: Path,
                                                                        textured_clip: Path) -> None:
    """The webvid preset's video embedding: every 1-fps frame, PIL bicubic, each frame's image_embeds
    normalised, averaged, normalised (the notebook's recipe with CLIPVisionModelWithProjection)."""
    from transformers import CLIPVisionModelWithProjection

    from demo.models.encoders import Clip4ClipEncoder

    enc = Clip4ClipEncoder.from_pretrained(tiny_clip4clip, pooling="meanP", device="cpu",
                                           frame_sampling="every-second", frame_resize="pil-bicubic")
    ours = enc.encode_videos([textured_clip])[0]
    info = probe(textured_clip)
    frames = read_frames(textured_clip, ref_extractor_frames(info.num_frames, info.fps, 1))
    pixels = torch.from_numpy(np.stack([ref_clip_transform(f, enc.image_size) for f in frames]))
    vision = CLIPVisionModelWithProjection.from_pretrained(tiny_clip4clip).eval()
    with torch.no_grad():
        emb = vision(pixel_values=pixels).image_embeds
    emb = emb / emb.norm(dim=-1, keepdim=True)
    expected = emb.mean(0) / emb.mean(0).norm()
    assert len(frames) == 4  # 3.2 s: seconds 0, 1, 2, 3; no cap
    np.testing.assert_allclose(ours, expected.numpy(), atol=1e-5)


# ------------------------------------------------- 3. video -> text with several captions


def test_v2t_groups_is_clip4clips_multi_sentence_figure() -> None:
    rng = np.random.default_rng(3)
    v = 40
    caption_video = np.concatenate([np.arange(v), rng.integers(0, v, 70)])
    rng.shuffle(caption_video)
    videos, captions = rng.normal(size=(v, 16)), rng.normal(size=(len(caption_video), 16))
    videos[:, :4] += 2.0 * captions[np.argsort(caption_video, kind="stable")][np.unique(caption_video,
                                                                                        return_index=True)[1], :4]
    sim = captions @ videos.T
    expected = ref_v2t_multi_sentence(sim, caption_video)
    ours = metrics_from_ranks(chunked_v2t_group_ranks(videos, captions, caption_video, chunk=97))
    for key, value in expected.items():
        assert ours[key] == pytest.approx(value, abs=1e-9), key
    # Ours ranks the video's best caption against EVERY caption of the others: never easier.
    strict = chunked_v2t_ranks(videos, captions, caption_video, chunk=7)
    assert (strict >= chunked_v2t_group_ranks(videos, captions, caption_video)).all()
    assert metrics_from_ranks(strict)["MnR"] > ours["MnR"]


# --------------------------------------------------------------- 4. seqTransf blocks


def random_head_state(width: int = 128, layers: int = 2, positions: int = 77, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int, std: float = 0.2) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * std

    sd = {"frame_position_embeddings.weight": r(positions, width, std=0.5)}
    for i in range(layers):
        p = f"transformerClip.resblocks.{i}."
        sd.update({p + "attn.in_proj_weight": r(3 * width, width, std=0.15), p + "attn.in_proj_bias": r(3 * width),
                   p + "attn.out_proj.weight": r(width, width, std=0.15), p + "attn.out_proj.bias": r(width),
                   p + "ln_1.weight": 1 + r(width), p + "ln_1.bias": r(width),
                   p + "ln_2.weight": 1 + r(width), p + "ln_2.bias": r(width),
                   p + "mlp.c_fc.weight": r(4 * width, width, std=0.1), p + "mlp.c_fc.bias": r(4 * width),
                   p + "mlp.c_proj.weight": r(width, 4 * width, std=0.05), p + "mlp.c_proj.bias": r(width)})
    return sd


def test_seqtransf_blocks_compute_as_clip4clips() -> None:
    from demo.models.convert import head_weights

    width, layers, heads, t = 128, 2, 2, 12
    sd = random_head_state(width, layers)
    settings = Clip4ClipSettings.reference(pooling="seqTransf", max_frames=t, head_layers=layers, head_heads=heads)
    head = SeqTransfHead(width, t, layers, heads, settings.head_activation, settings.head_layer_norm_eps).eval()
    head.load_state_dict(head_weights(sd, "seqTransf", t))
    frames = torch.randn(4, t, width, generator=torch.Generator().manual_seed(1)) * 3
    mask = torch.zeros(4, t, dtype=torch.bool)
    for b, n in enumerate((12, 7, 3, 1)):
        mask[b, :n] = True
    with torch.no_grad():
        ours = head(frames, mask)
        expected = torch.stack([ref_seqtransf(frames[b], mask[b], sd, layers, heads) for b in range(4)])
    assert (ours - expected).abs().max().item() <= 1e-5
    # Our own blocks (exact GELU, eps 1e-5) on the same weights are another function.
    legacy = SeqTransfHead(width, t, layers, heads).eval()
    legacy.load_state_dict(head_weights(sd, "seqTransf", t))
    with torch.no_grad():
        assert (legacy(frames, mask) - expected).abs().max().item() > 1e-4


# ------------------------------------------- the converter: towers, heads, the CLI


def ref_clip_block(x: torch.Tensor, sd: dict, p: str, heads: int, additive: torch.Tensor) -> torch.Tensor:
    """One OpenAI CLIP residual block: torch LayerNorm (eps 1e-5), attention, QuickGELU MLP."""
    ln = torch.nn.functional.layer_norm
    d = x.shape[-1]
    x = x + ref_attention(ln(x, (d,), sd[p + "ln_1.weight"], sd[p + "ln_1.bias"], 1e-5), sd, p, heads, additive)
    h = ln(x, (d,), sd[p + "ln_2.weight"], sd[p + "ln_2.bias"], 1e-5) @ sd[p + "mlp.c_fc.weight"].t()
    h = h + sd[p + "mlp.c_fc.bias"]
    return x + (h * torch.sigmoid(1.702 * h)) @ sd[p + "mlp.c_proj.weight"].t() + sd[p + "mlp.c_proj.bias"]


def ref_encode_image(image: torch.Tensor, sd: dict, layers: int, heads: int) -> torch.Tensor:
    """OpenAI CLIP's ViT encode_image for ONE (3, S, S) image -> projected class token."""
    ln = torch.nn.functional.layer_norm
    w = sd["clip.visual.conv1.weight"]
    patches = torch.nn.functional.conv2d(image[None], w, stride=w.shape[-1])[0].flatten(1).t()  # (N, W)
    x = torch.cat([sd["clip.visual.class_embedding"][None], patches]) + sd["clip.visual.positional_embedding"]
    d = x.shape[-1]
    x = ln(x, (d,), sd["clip.visual.ln_pre.weight"], sd["clip.visual.ln_pre.bias"], 1e-5)
    for i in range(layers):
        x = ref_clip_block(x, sd, f"clip.visual.transformer.resblocks.{i}.", heads, torch.zeros(1))
    cls = ln(x[0], (d,), sd["clip.visual.ln_post.weight"], sd["clip.visual.ln_post.bias"], 1e-5)
    return cls @ sd["clip.visual.proj"]


def ref_encode_text(ids: torch.Tensor, sd: dict, layers: int, heads: int) -> torch.Tensor:
    """OpenAI CLIP's encode_text for ONE token sequence: causal blocks, the end token's features."""
    t = len(ids)
    x = sd["clip.token_embedding.weight"][ids] + sd["clip.positional_embedding"][:t]
    causal = torch.full((t, t), float("-inf")).triu(1)
    for i in range(layers):
        x = ref_clip_block(x, sd, f"clip.transformer.resblocks.{i}.", heads, causal)
    d = x.shape[-1]
    x = torch.nn.functional.layer_norm(x, (d,), sd["clip.ln_final.weight"], sd["clip.ln_final.bias"], 1e-5)
    return x[int(ids.argmax())] @ sd["clip.text_projection"]


def random_clip4clip_checkpoint(pooling: str, seed: int = 0) -> dict:
    """A CLIP4Clip-style state dict: tiny OpenAI CLIP (text 128 wide, vision 64 wide, 32 px, patch 8)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int, std: float = 0.05) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * std

    def blocks(prefix: str, width: int, n: int) -> dict:
        out = {}
        for i in range(n):
            p = f"{prefix}{i}."
            out.update({p + "attn.in_proj_weight": r(3 * width, width, std=0.1), p + "attn.in_proj_bias": r(3 * width),
                        p + "attn.out_proj.weight": r(width, width, std=0.1), p + "attn.out_proj.bias": r(width),
                        p + "ln_1.weight": 1 + r(width), p + "ln_1.bias": r(width), p + "ln_2.weight": 1 + r(width),
                        p + "ln_2.bias": r(width), p + "mlp.c_fc.weight": r(4 * width, width, std=0.1),
                        p + "mlp.c_fc.bias": r(4 * width), p + "mlp.c_proj.weight": r(width, 4 * width, std=0.05),
                        p + "mlp.c_proj.bias": r(width)})
        return out

    sd = {"clip.token_embedding.weight": r(49408, 128, std=0.2), "clip.positional_embedding": r(77, 128, std=0.1),
          "clip.ln_final.weight": 1 + r(128), "clip.ln_final.bias": r(128),
          "clip.text_projection": r(128, 128, std=0.1),
          "clip.logit_scale": torch.tensor(math.log(1 / 0.05)),
          "clip.visual.conv1.weight": r(64, 3, 8, 8, std=0.1), "clip.visual.class_embedding": r(64, std=0.2),
          "clip.visual.positional_embedding": r(17, 64, std=0.1), "clip.visual.ln_pre.weight": 1 + r(64),
          "clip.visual.ln_pre.bias": r(64), "clip.visual.ln_post.weight": 1 + r(64), "clip.visual.ln_post.bias": r(64),
          "clip.visual.proj": r(64, 128, std=0.1)}
    sd.update(blocks("clip.transformer.resblocks.", 128, 2))
    sd.update(blocks("clip.visual.transformer.resblocks.", 64, 2))
    if pooling == "seqTransf":
        sd.update(random_head_state(128, 2, 77, seed))
    if pooling == "seqLSTM":
        lstm = torch.nn.LSTM(128, 128, batch_first=True)
        sd.update({f"lstm_visual.{k}": v.detach().clone() for k, v in lstm.state_dict().items()})
        sd["frame_position_embeddings.weight"] = r(77, 128)
    return {("module." if pooling == "seqLSTM" else "") + k: v for k, v in sd.items()}  # DDP prefix once


@pytest.mark.parametrize("pooling", ["meanP", "seqLSTM", "seqTransf"])
def test_converted_clip4clip_checkpoint_computes_as_clip4clip(tmp_path: Path, pooling: str) -> None:
    from demo.cli import main
    from demo.models.clip4clip import Clip4Clip
    from demo.models.encoders import Clip4ClipEncoder

    sd = random_clip4clip_checkpoint(pooling)
    torch.save(sd, tmp_path / "pytorch_model.bin.4")
    assert main(["convert", "clip4clip", str(tmp_path / "pytorch_model.bin.4"), "--out", str(tmp_path / "c4c")]) == 0
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    model = Clip4Clip.from_pretrained(tmp_path / "c4c")
    s = model.settings
    assert (s.pooling, s.frame_sampling, s.frame_resize, s.max_frames, s.max_words) == \
        (pooling, "clip4clip", "pil-bicubic", 12, 32)
    assert (s.head_activation, s.head_layer_norm_eps) == ("quick_gelu", 1e-12)
    images = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours = model.vision(pixel_values=images).image_embeds
        expected = torch.stack([ref_encode_image(im, sd, 2, 1) for im in images])
        assert (ours - expected).abs().max().item() <= 1e-5
        enc = Clip4ClipEncoder.from_pretrained(tmp_path / "c4c", device="cpu")
        tokens = enc.tokenize(["a dog catches a frisbee on the beach", "a red car"])
        text = model.text(**tokens).text_embeds
        for row, (ids, m) in enumerate(zip(tokens["input_ids"], tokens["attention_mask"], strict=True)):
            ref = ref_encode_text(ids[m.bool()], sd, 2, 2)
            assert (text[row] - ref).abs().max().item() <= 1e-5
        mask = torch.tensor([[True] * 5 + [False] * 7])
        frames = torch.zeros(1, 12, 3, 32, 32)
        frames[0, :5] = images
        pooled = model.encode_video(frames, mask)[0]
    embeds = expected
    if pooling == "seqTransf":
        padded = torch.zeros(12, 128)
        padded[:5] = embeds
        reference = ref_seqtransf(padded, mask[0], sd, 2, 2)
    elif pooling == "seqLSTM":
        lstm = torch.nn.LSTM(128, 128, batch_first=True)
        lstm.load_state_dict({k.removeprefix("lstm_visual."): v for k, v in sd.items() if k.startswith("lstm_visual.")})
        with torch.no_grad():
            hidden = lstm(embeds[None])[0][0] + embeds  # CLIP4Clip runs the LSTM over the valid frames only
        unit = hidden / hidden.norm(dim=-1, keepdim=True)
        reference = unit.mean(0) / unit.mean(0).norm()
    else:
        unit = embeds / embeds.norm(dim=-1, keepdim=True)
        reference = unit.mean(0) / unit.mean(0).norm()
    assert (pooled - reference).abs().max().item() <= 1e-5


def test_converter_refuses_what_it_cannot_run(tmp_path: Path) -> None:
    from demo.cli import main

    sd = random_clip4clip_checkpoint("meanP")
    sd["cross.embeddings.position_embeddings.weight"] = torch.zeros(2, 2)
    torch.save(sd, tmp_path / "tight.bin")
    assert main(["convert", "clip4clip", str(tmp_path / "tight.bin"), "--out", str(tmp_path / "x")]) == 2
    (tmp_path / "junk.bin").write_bytes(b"not a checkpoint")
    assert main(["convert", "clip4clip", str(tmp_path / "junk.bin"), "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------ 5. X-CLIP inputs


def test_xclip_frames_equal_the_processors(tmp_path: Path, textured_clip: Path) -> None:
    from transformers import XCLIPProcessor

    from demo.models.xclip import XClipClassifier
    from demo.video.preprocess import load_uniform_clip
    from demo.video.sampling import uniform_indices
    from tests.conftest import tiny_xclip

    folder = tiny_xclip(tmp_path / "xclip")
    classifier = XClipClassifier.from_pretrained(folder)
    assert classifier.processor is not None
    ours, _ = load_uniform_clip(textured_clip, classifier.num_frames, classifier.image_size, classifier.mean,
                                classifier.std, processor=classifier.processor)
    frames = read_frames(textured_clip, uniform_indices(probe(textured_clip).num_frames, classifier.num_frames))
    processor = XCLIPProcessor.from_pretrained(folder)
    expected = processor(videos=list(frames), return_tensors="pt")["pixel_values"][0]
    assert torch.equal(ours, expected.float())
    # The probabilities are those of the model on the processor's pixels.
    labels = ["stripes", "noise", "a dog"]
    result = classifier.classify(textured_clip, labels, k=3)
    inputs = processor(text=labels, videos=list(frames), return_tensors="pt", padding=True)
    with torch.no_grad():
        probs = classifier.model(**inputs).logits_per_video[0].softmax(-1)
    assert dict(zip(result.labels, result.probs, strict=True)) == pytest.approx(
        dict(zip(labels, probs.tolist(), strict=True)), abs=1e-6)
    # A folder that records decoder-scaled frames (the embedded X-CLIP) keeps them.
    (folder / "xclip.json").write_text('{"frame_resize": "decoder"}')
    assert XClipClassifier.from_pretrained(folder).processor is None


def test_the_shipped_models_keep_the_pipeline_they_were_trained_with() -> None:
    """The embedded preset's numbers rest on this: its checkpoints name no new setting, so they keep
    decoder-scaled frames, the float-fps rule and GELU / 1e-5 blocks; its X-CLIP records its frames."""
    from demo.index.video_index import VideoIndex
    from demo.models.clip4clip import checkpoint_settings
    from demo.models.xclip import frame_resize
    from demo.presets import PRECOMPUTED

    s = checkpoint_settings(str(PRECOMPUTED / "clip4clip-world"))
    assert (s.frame_sampling, s.frame_resize, s.head_activation, s.head_layer_norm_eps) == \
        ("float-fps", "decoder", "gelu", 1e-5)
    assert frame_resize(str(PRECOMPUTED / "xclip-world")) == "decoder"
    fp = VideoIndex.load(PRECOMPUTED / "index-world").fingerprint
    assert (fp.sampling, fp.resize) == ("float-fps", "decoder")
