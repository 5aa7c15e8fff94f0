"""Compositional queries: is each asked attribute bound to the object, or only present somewhere?

A free-form query names a colour, a shape and an event. A model that reads the three apart
("something green", "a star", "something drifting left") can still rank a green circle drifting
left or a white star drifting left first. This set asks only for (colour, shape, event) triples
that some index clip holds while every pair of the triple also occurs in the index with another
third attribute (a green star that does something else, a green thing drifting left that is not a
star, a star drifting left that is not green), so a ranking blind to any one attribute has a
distractor to fall for. :func:`compositional_queries` builds them from lone-object test clips;
the result gives, beside the hit rates, the rate a ranking perfect on two attributes but blind to
the third would reach (:func:`blind_rate`): the bar a model must clear to show it binds that one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from demo.evaluate.queries import NEW_PHRASES, TEMPLATES, FreeQuery, blind_rate, fill, hit_rate, is_lone

TRIPLE = ("colour", "shape", "event")


def _objects(attributes: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(o["colour"], o["shape"], o["event"]) for o in attributes.get("objects", ())]


def compositional_triples(index_attributes: Sequence[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """The (colour, shape, event) triples of the index's objects whose every pair also occurs in the
    index with a different third attribute."""
    held = {t for a in index_attributes for t in _objects(a)}
    pairs: dict[tuple[int, tuple[str, ...]], set[str]] = {}
    for t in held:
        for i in range(3):
            pairs.setdefault((i, (t[:i] + t[i + 1:])), set()).add(t[i])  # i: the attribute left out
    return {t for t in held if all(len(pairs[i, t[:i] + t[i + 1:]]) > 1 for i in range(3))}


def compositional_queries(test_attributes: Sequence[dict[str, Any]], index_attributes: Sequence[dict[str, Any]],
                          n: int = 200, seed: int = 0) -> list[FreeQuery]:
    """Up to ``n`` queries, one per sampled lone-object test clip whose triple is compositional in the
    index, phrased as the free-form queries are (new event phrasings; no size)."""
    triples = compositional_triples(index_attributes)
    pool = [a for a in test_attributes if is_lone(a) and _objects(a)[0] in triples]
    rng = np.random.default_rng(seed)
    templates = [t for t in TEMPLATES if "{size}" not in t]
    out = []
    for i in rng.choice(len(pool), size=min(n, len(pool)), replace=False):
        colour, shape, event = _objects(pool[int(i)])[0]
        phrase = NEW_PHRASES[event][int(rng.integers(2))]
        text = fill(templates[int(rng.integers(len(templates)))], colour=colour, shape=shape, phrase=phrase)
        out.append(FreeQuery(text, colour, shape, event, None, phrase))
    return out


def evaluate_compositional(search: Callable[[str, int], list[str]], rows: dict[str, dict[str, Any]],
                           test_attributes: Sequence[dict[str, Any]], n: int = 200, k: int = 5,
                           seed: int = 0) -> dict[str, Any]:
    """Hit rates of the compositional set (``search(text, k) -> ids``, ``rows``: id -> attributes of every
    index clip), the top-``k`` agreement per attribute, and each attribute's blind rate."""
    queries = compositional_queries(test_attributes, list(rows.values()), n, seed)
    result = hit_rate(queries, search, rows.__getitem__, k)
    result.pop("examples")
    corpus = list(rows.values())
    return {**result, "blind": {name: blind_rate(queries, corpus, k, name) for name in TRIPLE}}


def compositional_markdown(c: dict[str, Any], k: int = 5) -> list[str]:
    """The report's paragraph on the compositional set."""
    agreement = ", ".join(f"{name} {c['agreement'][name]:.1f}%" for name in TRIPLE if name in c["agreement"])
    blind = ", ".join(f"{name} {c['blind'][name]:.1f}%" for name in TRIPLE)
    return [f"**Compositional queries** ({c['queries']} queries whose colour, shape and event an index clip holds "
            "while every pair of the three also occurs with another third): a matching clip at rank 1 for "
            f"{c['hit@1']:.1f}%, in the top {k} for {c[f'hit@{k}']:.1f}%. Of the clips in the top {k}, the share "
            f"with the asked {agreement}. A ranking right on the other two but blind to one attribute would answer "
            f"in its top {k}: blind to {blind}.", ""]
