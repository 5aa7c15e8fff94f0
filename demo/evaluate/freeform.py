"""The free-form query check over an index, as the evaluation runs it: the free-form set, the same
queries in the captions' words, event recognition and the compositional set, searched exactly with the
index's own model (:mod:`demo.evaluate.queries`, :mod:`demo.evaluate.compositional`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from demo.evaluate.compositional import evaluate_compositional
from demo.evaluate.queries import blind_rate, event_recognition, hit_rate, is_lone, make_queries
from demo.presets import Preset, resolve_preset
from demo.search.searcher import open_searcher
from demo.world import EVENTS


def evaluate_freeform(index_dir: str | Path | Preset, test_attributes: Sequence[dict[str, Any]], n: int = 300,
                      k: int = 5, seed: int = 0, device: str | None = None) -> dict[str, Any]:
    """Free-form queries about test clips, searched (exactly) in the index with its own model.

    ``n`` = 300 keeps the standard error of a hit rate near 2.7 points (60 queries: 6).
    ``caption_words`` holds the hit rates of the same queries with each event said in the
    captions' own words: the gap to it is what the new phrasings cost, the rest is recognition.
    ``shape_blind`` is :func:`blind_rate` (shape) over the index, ``compositional`` the
    :mod:`~demo.evaluate.compositional` set, ``events`` the
    :func:`event_recognition` of the index's lone-object test clips.
    """
    searcher = open_searcher(index_dir if isinstance(index_dir, Preset) else resolve_preset(index=str(index_dir)),
                             device)
    rows = {str(r["id"]): r.get("attributes") or {} for r in searcher.index.metadata}

    def search(text: str, kk: int) -> list[str]:
        return [h.id for h in searcher.search_text(text, k=kk, exact=True)]

    queries = make_queries(test_attributes, n, seed)
    result = hit_rate(queries, search, rows.__getitem__, k)
    control = hit_rate([q.in_caption_words() for q in queries], search, rows.__getitem__, k)
    lone = [(searcher.index.vector(str(r["id"])), r["attributes"]) for r in searcher.index.metadata
            if r.get("split") == "test" and is_lone(r.get("attributes") or {})]
    return {**result, "index_size": len(rows), "shape_blind": blind_rate(queries, list(rows.values()), k, "shape"),
            "caption_words": {key: value for key, value in control.items() if key != "examples"},
            "events": event_recognition(searcher.encoder.encode_texts, lone, EVENTS),
            "compositional": evaluate_compositional(search, rows, test_attributes, k=k, seed=seed)}
