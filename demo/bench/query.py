"""The query path end to end: text -> embedding -> binary search -> top-10.

Times a CLIP ViT-B/32-sized text tower (random init: weights do not change the speed)
in fp32 and with int8 dynamic quantisation of its Linear layers, alone and followed by
the binary + rerank search over the largest benchmark set. Then checks on the embedded
model (or the fallback model, see :mod:`demo.bench.data`) whether quantisation changes
the top-10 of real queries.
"""

from __future__ import annotations

import copy
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from demo.bench.common import (
    TINY_TEXT,
    TINY_VISION,
    VITB32_TEXT,
    random_encoder,
    time_calls,
    weights_mb,
)
from demo.index.binary import build_binary_index, default_rerank, hamming_search, rerank_rows
from demo.models.encoders import Clip4ClipEncoder

if TYPE_CHECKING:
    from demo.bench.data import RealBase, SearchSet

log = logging.getLogger(__name__)

# Timing queries: what people type, from two words to a long sentence.
QUERIES = [
    "a red circle moving left", "two squares",
    "a small blue star turning clockwise on a grass background", "something growing",
    "a green triangle bouncing", "a yellow heart shrinking while a purple cross moves up",
    "an object appearing", "a large orange hexagon moving right over the ocean",
    "a pink square passing a white circle", "objects moving apart", "a cat",
    "a person riding a bike at sunset", "the camera pans across a city skyline at night with cars driving by",
    "a blue star", "disappearing", "a big red circle approaching a small green square",
    "turning anticlockwise", "a cross staying still on a brick background", "two shapes", "a dog runs",
]  # fmt: skip


def quantize_text_tower(encoder: Clip4ClipEncoder) -> Clip4ClipEncoder:
    """Swap the encoder's text tower for an int8 copy (dynamic quantisation of every
    ``nn.Linear``: int8 weights, activations quantised per batch at run time). CPU only;
    the vision tower and temporal head stay fp32. Returns the same encoder.

    This is what an opt-in ``quantize=True`` of :class:`demo.models.encoders.Clip4ClipEncoder`
    would run after loading (see BENCHMARKS.md for speed and top-10 agreement).
    """
    import torch
    from torch.ao.quantization import quantize_dynamic

    if encoder.device != "cpu":
        raise ValueError(f"int8 dynamic quantisation runs on CPU only, the encoder is on {encoder.device!r}")
    with warnings.catch_warnings():
        # torch 2.13 marks the quantised tensor constructors deprecated (in favour of torchao)
        # but they work; the warning would print on every load.
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*", category=UserWarning)
        encoder.model.text = quantize_dynamic(encoder.model.text, {torch.nn.Linear}, dtype=torch.qint8)
    return encoder


def quantized_copy(encoder: Clip4ClipEncoder) -> Clip4ClipEncoder:
    """A second encoder with a quantised text tower; ``encoder`` is left as it was."""
    twin = Clip4ClipEncoder(copy.deepcopy(encoder.model), encoder.tokenizer, encoder.name, "cpu")
    return quantize_text_tower(twin)


@dataclass(frozen=True)
class QueryScale:
    tower: str = "vitb32"  # "vitb32": CLIP ViT-B/32's text tower; "tiny": the tests' size
    reps: int = 50
    agreement_queries: int = 20
    k: int = 10


def bench_query(workdir: Path, search_set: SearchSet | None, base: RealBase | None,
                scale: QueryScale = QueryScale()) -> dict[str, Any]:  # noqa: B008
    """Encode-only and end-to-end latency per precision, plus the top-10 agreement."""
    text = VITB32_TEXT if scale.tower == "vitb32" else {**TINY_TEXT, "projection_dim": 512}
    vision = {**TINY_VISION, "projection_dim": text["projection_dim"]}
    fp32 = random_encoder(text, vision, workdir, name=f"text-{scale.tower}")
    towers = {"fp32": fp32, "int8": quantized_copy(fp32)}
    tokens = [int(fp32.tokenize([q])["attention_mask"].sum()) for q in QUERIES]
    import torch

    search = _search_fn(search_set, scale.k)
    rows = []
    # The encoders' default (one thread for a single query, see Clip4ClipEncoder.query_threads)
    # and torch's whole thread team, which waits on itself whenever another process holds a core.
    shipped = fp32.query_threads
    for threads in dict.fromkeys((shipped, torch.get_num_threads())):
        for enc in towers.values():
            enc.query_threads = threads
        for precision, enc in towers.items():
            row = _time_tower(precision, enc, search, threads or torch.get_num_threads(), scale)
            rows.append({**row, "default_threads": threads == shipped})
    return {"tower": scale.tower, "text_config": text, "tokens_mean": float(np.mean(tokens)),
            "search": ({"n": search_set.n, "data": search_set.name, "rerank": default_rerank(search_set.n)}
                       if search_set is not None else None),
            "rows": rows, "agreement": quantisation_agreement(base, scale)}


def _time_tower(precision: str, enc: Clip4ClipEncoder, search: Any, threads: int,
                scale: QueryScale) -> dict[str, Any]:
    def encode(i: int) -> np.ndarray:
        return enc.encode_texts([QUERIES[i % len(QUERIES)]])

    def end_to_end(i: int) -> object:
        return search(encode(i))

    row: dict[str, Any] = {"precision": precision, "threads": threads, "weights_mb": weights_mb(enc.model.text),
                           "encode": time_calls(encode, scale.reps, warmup=2).to_dict()}
    if search is not None:
        row["end_to_end"] = time_calls(end_to_end, scale.reps, warmup=2).to_dict()
    log.info("query: %s text tower, %d torch thread(s): encode p50 %.1f ms", precision, threads,
             row["encode"]["p50_ms"])
    return row


def _search_fn(search_set: SearchSet | None, k: int) -> Any:
    """(1, D) query -> top-k with :func:`hamming_search` + :func:`rerank_rows` at the default
    depth, as ``VideoIndex.search`` runs when not told otherwise."""
    if search_set is None:
        return None
    depth = default_rerank(search_set.n)
    binary = build_binary_index(np.load(search_set.codes_path), search_set.dim)
    emb = np.load(search_set.emb_path, mmap_mode="r")

    def search(vec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return rerank_rows(emb, vec, hamming_search(binary, vec, depth), k)

    return search


def quantisation_agreement(base: RealBase | None, scale: QueryScale) -> dict[str, Any]:
    """Share of real queries whose exact top-k videos are the same set in fp32 and int8."""
    if base is None or base.encoder is None:
        return {"skipped": "no model to compare (the embedded index came without its model)"}
    encoder = base.encoder
    texts = list(dict.fromkeys(base.caption_texts))  # distinct, in order
    picked = [texts[i] for i in np.linspace(0, len(texts) - 1, scale.agreement_queries).astype(int)]
    videos = np.asarray(base.videos, np.float32)
    a = encoder.encode_texts(picked)
    b = quantized_copy(encoder).encode_texts(picked)
    k = min(scale.k, len(videos))
    top_a = np.argsort(-(a @ videos.T), axis=1)[:, :k]
    top_b = np.argsort(-(b @ videos.T), axis=1)[:, :k]
    same = [set(x) == set(y) for x, y in zip(top_a, top_b, strict=True)]
    overlap = [len(set(x) & set(y)) / k for x, y in zip(top_a, top_b, strict=True)]
    return {"model": encoder.name, "queries": len(picked), "videos": len(videos), "k": k,
            "identical_top_k": float(np.mean(same)), "mean_overlap": float(np.mean(overlap)),
            "same_top1": float(np.mean(top_a[:, 0] == top_b[:, 0])),
            "mean_cosine_fp32_int8": float(np.mean(np.sum(a * b, axis=1))), "note": base.note}


def format_query_markdown(result: dict[str, Any]) -> str:
    r = result
    s = r["search"]
    cfg = r["text_config"]
    where = f"Search: binary + rerank{s['rerank']} over {s['data']} N={s['n']:,}." if s else "No search set."
    lines = [f"Text tower: {cfg['num_hidden_layers']} layers, width {cfg['hidden_size']}, "
             f"{cfg['num_attention_heads']} heads, vocab {cfg['vocab_size']}, "
             f"projection {cfg['projection_dim']} (random init); queries average "
             f"{r['tokens_mean']:.1f} tokens. {where}",
             "", "| text tower | torch threads | weights MiB | encode p50 / p95 ms | text -> top-10 p50 / p95 ms "
             "| reps |", "|---|---:|---:|---:|---:|---:|"]
    for row in r["rows"]:
        e = row["encode"]
        t = row.get("end_to_end")
        e2e = f"{t['p50_ms']:.1f} / {t['p95_ms']:.1f}" if t else "n/a"
        lines.append(f"| {row['precision']} | {row.get('threads', '')} | {row['weights_mb']:.0f} "
                     f"| {e['p50_ms']:.1f} / {e['p95_ms']:.1f} | {e2e} | {e['reps']} |")
    a = r["agreement"]
    lines.append("")
    if "skipped" in a:
        lines.append(f"int8 vs fp32 top-10: skipped ({a['skipped']}).")
    else:
        lines.append(f"int8 vs fp32 on {a['model']} ({a['queries']} caption queries, {a['videos']} videos, "
                     f"exact search): identical top-{a['k']} sets {a['identical_top_k']:.2f}, mean overlap "
                     f"{a['mean_overlap']:.2f}, same top-1 {a['same_top1']:.2f}, mean cosine between the "
                     f"fp32 and int8 query embeddings {a['mean_cosine_fp32_int8']:.4f}. Model: {a['note']}.")
    return "\n".join(lines) + "\n"
