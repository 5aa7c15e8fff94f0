"""Embedding sets for the search benchmark, written to disk as an index keeps them.

Each set is a float16 (N, D) ``.npy`` (memory-mapped by the binary search, as
:meth:`demo.index.video_index.VideoIndex.load` does), its packed sign codes, and (Q, D) queries:

- ``clustered``: points around ``clusters`` random centres on the sphere; queries are
  noisy copies of random members.
- ``realistic``: the embedded index's video embeddings (its caption embeddings are the
  queries: real text -> video), replicated with noise up to N. Without a shipped index a
  random-init CLIP4Clip with 512-d projections embeds rendered world clips instead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from demo.bench.common import random_encoder, recorded_path
from demo.index.binary import binarize, l2_normalize
from demo.index.video_index import VideoIndex
from demo.models.encoders import Clip4ClipEncoder
from demo.presets import EMBEDDED
from demo.video.preprocess import CLIP_MEAN, CLIP_STD, preprocess
from demo.video.sampling import clip4clip_indices
from demo.world import WorldConfig, clip_specs, render

log = logging.getLogger(__name__)
_CHUNK = 65536  # rows generated and written at a time (bounds memory at 1M x 512)


@dataclass
class SearchSet:
    """One data set at one size; ``emb_path`` and ``codes_path`` are .npy files."""

    name: str
    n: int
    dim: int
    emb_path: Path  # (n, dim) float16, unit rows
    codes_path: Path  # (n, dim/8) uint8
    queries: np.ndarray  # (Q, dim) float32, unit rows
    note: str = ""
    fallback: bool = False  # made from a random-init model: recall here says nothing about a trained one


@dataclass
class RealBase:
    """Real embeddings to replicate: videos (V, D), caption queries (C, D), the model."""

    videos: np.ndarray
    captions: np.ndarray
    caption_texts: list[str]
    encoder: Clip4ClipEncoder | None  # None when the index came without a loadable model
    note: str
    fallback: bool = False


def write_set(path: Path, n: int, dim: int, rows: Iterable[np.ndarray]) -> tuple[Path, Path]:
    """Stream (chunk, dim) float32 blocks from the iterator ``rows`` into float16 + codes files."""
    from numpy.lib.format import open_memmap

    emb = open_memmap(path.with_suffix(".f16.npy"), mode="w+", dtype=np.float16, shape=(n, dim))
    codes = open_memmap(path.with_suffix(".codes.npy"), mode="w+", dtype=np.uint8, shape=(n, dim // 8))
    start = 0
    for block in rows:
        half = l2_normalize(block).astype(np.float16)
        emb[start : start + len(half)] = half
        codes[start : start + len(half)] = binarize(half)
        start += len(half)
    if start != n:
        raise RuntimeError(f"wrote {start} rows, expected {n}")
    emb.flush()
    codes.flush()
    del emb, codes
    return path.with_suffix(".f16.npy"), path.with_suffix(".codes.npy")


def clustered_sets(workdir: Path, sizes: tuple[int, ...], dim: int = 512, clusters: int = 1000,
                   spread: float = 1.0, query_noise: float = 0.75, queries: int = 500,
                   seed: int = 0, mean: float = 0.0, name: str = "clustered") -> list[SearchSet]:
    """``clusters`` gaussian clusters on the unit sphere, one set per size (smaller sizes
    are prefixes of the largest, so they share clusters and queries).

    A member is centre + noise of norm ~``spread`` (cosine ~0.7 to its centre at 1.0), plus
    ``mean`` times a direction every row shares (CLIP embeddings share one: 0 leaves it out); a
    query is a member of the smallest set + noise of norm ~``query_noise`` (cosine ~0.8).
    """
    rng = np.random.default_rng(seed)
    centres = l2_normalize(rng.standard_normal((clusters, dim), dtype=np.float32))
    direction = l2_normalize(np.random.default_rng(seed + 4).standard_normal((1, dim)))[0]
    shift = (mean * direction).astype(np.float32)  # zeros when mean is 0: the rows are as before
    n_max = max(sizes)

    def rows() -> Iterator[np.ndarray]:
        gen = np.random.default_rng(seed + 1)
        for s in range(0, n_max, _CHUNK):
            m = min(_CHUNK, n_max - s)
            noise = gen.standard_normal((m, dim), dtype=np.float32) * np.float32(spread / np.sqrt(dim))
            yield centres[gen.integers(0, clusters, m)] + noise + shift

    emb_path, codes_path = write_set(workdir / f"{name}_{n_max}", n_max, dim, rows())
    q = member_queries(emb_path, min(sizes), queries, query_noise, rng)
    shared = f"; every row shares a mean direction of weight {mean:g}" if mean else ""
    note = (f"{clusters} gaussian clusters on the sphere (member-centre cosine "
            f"~{1 / np.hypot(1, spread):.2f}){shared}; queries: members + noise "
            f"(cosine ~{1 / np.hypot(1, query_noise):.2f} to their member)")
    return _prefix_sets(name, sizes, dim, emb_path, codes_path, q, note)


def member_queries(emb_path: Path, pool: int, count: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    """(count, D) unit queries near one member each: distinct rows of the first ``pool`` of the
    float16 ``emb_path``, each + gaussian noise of norm ~``noise`` (cosine ~1/hypot(1, noise))."""
    members = np.load(emb_path, mmap_mode="r")
    dim = members.shape[1]
    picked = np.sort(rng.choice(pool, size=min(count, pool), replace=False))
    moved = rng.standard_normal((len(picked), dim), dtype=np.float32) * np.float32(noise / np.sqrt(dim))
    return l2_normalize(np.asarray(members[picked], dtype=np.float32) + moved)


def _prefix_sets(name: str, sizes: tuple[int, ...], dim: int, emb_path: Path, codes_path: Path,
                 queries: np.ndarray, note: str, fallback: bool = False) -> list[SearchSet]:
    """One SearchSet per size; smaller sizes get their own files holding the first rows."""
    n_max = max(sizes)
    out = []
    for n in sorted(sizes):
        if n == n_max:
            out.append(SearchSet(name, n, dim, emb_path, codes_path, queries, note, fallback))
            continue
        small_emb = emb_path.with_name(f"{name}_{n}.f16.npy")
        small_codes = codes_path.with_name(f"{name}_{n}.codes.npy")
        np.save(small_emb, np.load(emb_path, mmap_mode="r")[:n])
        np.save(small_codes, np.load(codes_path, mmap_mode="r")[:n])
        out.append(SearchSet(name, n, dim, small_emb, small_codes, queries, note, fallback))
    return out


def nn_cosine(x: np.ndarray) -> float:
    """Median over rows of the cosine to the nearest other row (x: (V, D) unit rows)."""
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    return float(np.median(sims.max(axis=1)))


def orthonormal_map(d: int, dim: int, seed: int = 0) -> np.ndarray | None:
    """(d, dim) with orthonormal rows, or None when d == dim: ``x @ map`` lifts d-dim vectors to
    dim-dim keeping every cosine; the dim sign bits become random-hyperplane bits of x."""
    if d == dim:
        return None
    if d > dim:
        raise ValueError(f"cannot lift {d}-d embeddings to {dim}-d")
    basis, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, d)))
    return np.ascontiguousarray(basis.T, dtype=np.float32)


def realistic_sets(workdir: Path, base: RealBase, sizes: tuple[int, ...], queries: int = 500,
                   dim: int = 512, seed: int = 0) -> list[SearchSet]:
    """The base videos, then noisy copies of them up to each size, at ``dim`` dimensions.

    A copy is as far from its source as a real video is from its nearest neighbour: the
    noise norm makes cosine(copy, source) equal the base's median nearest-neighbour cosine.
    Narrower embeddings (the embedded model is 128-d) get their noise in their own space
    and are then lifted with :func:`orthonormal_map` (so the noise stays where the model's
    embeddings live, not in directions no query can see).
    """
    videos = l2_normalize(base.videos)
    v, native = videos.shape
    lift = orthonormal_map(native, dim, seed)
    target = min(max(nn_cosine(videos), 0.05), 0.9999)
    scale = np.float32(np.sqrt(1 / target**2 - 1) / np.sqrt(native))
    n_max = max(sizes)

    def rows() -> Iterator[np.ndarray]:
        gen = np.random.default_rng(seed + 2)
        for s in range(0, n_max, _CHUNK):
            ids = np.arange(s, min(s + _CHUNK, n_max))
            block = videos[ids % v].copy()
            copy = ids >= v  # the first V rows are the real videos themselves
            block[copy] += gen.standard_normal((int(copy.sum()), native), dtype=np.float32) * scale
            yield block if lift is None else block @ lift

    emb_path, codes_path = write_set(workdir / f"realistic_{n_max}", n_max, dim, rows())
    rng = np.random.default_rng(seed + 3)
    caps = l2_normalize(base.captions)
    caps = caps if lift is None else l2_normalize(caps @ lift)
    picked = np.sort(rng.choice(len(caps), size=min(queries, len(caps)), replace=False))
    lifted = (f"; noise added in their own {native}-d space, then lifted to {dim}-d by a random "
              f"orthonormal map (cosines kept; the {dim} sign bits are random-hyperplane bits)"
              if lift is not None else "")
    note = (f"{base.note}; {v} real video embeddings, then noisy copies of them (cosine {target:.3f} to "
            f"their source = the median nearest-neighbour cosine of the real ones){lifted}; queries: "
            f"{len(picked)} caption embeddings (text -> video)")
    return _prefix_sets("realistic", sizes, dim, emb_path, codes_path, caps[picked], note, base.fallback)


def real_base(workdir: Path, index_dir: Path | None = None, fallback_videos: int = 500,
              seed: int = 0) -> RealBase:
    """Video and caption embeddings of an index (default: the embedded one) and its model,
    or, when there is no such index, of a fallback model.

    The model is the index's ``model_path``, else the embedded preset's model. The fallback
    is a random-init CLIP4Clip (2 layers per tower, 512 wide, 512-d projection) run over
    ``fallback_videos`` rendered world test clips and their captions.
    """
    folder = Path(index_dir or EMBEDDED.index or "")
    if (folder / "manifest.json").is_file():
        index = VideoIndex.load(folder)
        texts = [index.caption_text(c) for c in range(len(index.caption_video))]
        model = next((Path(m) for m in (index.info.get("model_path"), EMBEDDED.model)
                      if m and Path(m).is_dir()), None)
        encoder = Clip4ClipEncoder.from_pretrained(model, device="cpu") if model else None
        note = (f"index {recorded_path(folder)} ({len(index)} videos, {index.fingerprint.describe()}, "
                f"model {recorded_path(model) if model else None})")
        return RealBase(np.asarray(index.embeddings, np.float32),
                        np.asarray(index.caption_embeddings, np.float32), texts, encoder, note)
    encoder = fallback_encoder(workdir, seed)
    videos, captions, texts = embed_world(encoder, fallback_videos)
    note = (f"FALLBACK: {recorded_path(folder)} is missing; a random-init CLIP4Clip (512-d) embedded "
            f"{len(videos)} rendered world clips and their captions. Random towers map every clip "
            f"to nearly the same vector (median nearest-neighbour cosine {nn_cosine(l2_normalize(videos)):.4f}), "
            "so recall on this set says nothing about a trained model")
    return RealBase(videos, captions, texts, encoder, note, fallback=True)


def fallback_encoder(workdir: Path, seed: int = 0) -> Clip4ClipEncoder:
    """Random-init CLIP4Clip, 2 layers per tower, 512 wide, 512-d, 32x32 frames (fast)."""
    text = dict(vocab_size=49408, hidden_size=512, intermediate_size=1024, num_hidden_layers=2,
                num_attention_heads=8, max_position_embeddings=77, projection_dim=512)
    vision = dict(image_size=32, patch_size=8, hidden_size=512, intermediate_size=1024,
                  num_hidden_layers=2, num_attention_heads=8, projection_dim=512)
    return random_encoder(text, vision, workdir, seed=seed, name="fallback-random-512",
                          sample_fps=3.0, max_frames=8, max_words=32)


def embed_world(encoder: Clip4ClipEncoder, count: int, batch: int = 32
                ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Render ``count`` world test clips in memory and embed them and their captions.

    Returns videos (count, D), captions (C, D) and the C caption texts.
    """
    import torch


    specs = clip_specs(WorldConfig(), "test")[:count]
    s, t = encoder.image_size, encoder.max_frames
    videos = []
    for start in range(0, len(specs), batch):
        frames = torch.zeros((min(batch, len(specs) - start), t, 3, s, s))
        mask = torch.zeros(frames.shape[:2], dtype=torch.bool)
        for j, spec in enumerate(specs[start : start + batch]):
            clip = render(spec)
            idx = clip4clip_indices(len(clip), spec.fps, encoder.sample_fps, t)
            x = preprocess(clip[idx], s, CLIP_MEAN, CLIP_STD)
            frames[j, : len(x)], mask[j, : len(x)] = x, True
        videos.append(encoder.encode_frames(frames, mask))
    texts = [c for spec in specs for c in spec.captions]
    return np.concatenate(videos), encoder.encode_texts(texts), texts
