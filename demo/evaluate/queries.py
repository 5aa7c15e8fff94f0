"""Free-form queries: vocabulary words in phrasings the training captions never used.

A person types "a small green star drifting to the right", not the caption grammar the
model was trained on. This check builds such queries from test clips' objects (so at
least one matching clip exists), searches the shipped index, and counts a query as
answered when a clip holding an object with the asked colour, shape and event (and size,
when asked) is among the top ``k``.

Two diagnostics say where a miss comes from: how often the top ``k`` hold each asked
attribute (:func:`hit_rate`'s ``agreement``), with the rate a ranking perfect on everything
but shape would reach (:func:`blind_rate`), and how well the model tells the twelve
events apart on a lone object (:func:`event_recognition`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from demo.world import EVENTS

# Event phrasings that appear in no training caption (checked in tests against
# demo.world.vocabulary()["event_phrases"]), recombined only from words the captions use,
# like "drifting to the right" from "drifting right" and "sliding to the right".
NEW_PHRASES: dict[str, tuple[str, ...]] = {
    "moving left": ("drifting to the left", "heading to the left"),
    "moving right": ("drifting to the right", "travelling to the right"),
    "moving up": ("floating upward", "going up"),
    "moving down": ("drifting down", "going downward"),
    "turning clockwise": ("clockwise spinning", "rotating and turning clockwise"),
    "turning anticlockwise": ("spinning anticlockwise", "turning counterclockwise"),
    "growing": ("getting larger", "growing bigger"),
    "shrinking": ("getting small", "shrinking smaller"),
    "bouncing": ("jumping up and down", "hopping up and down"),
    "appearing": ("fading into view", "coming in"),
    "disappearing": ("fading out of view", "vanishing away"),
    "staying still": ("resting still", "resting and not moving"),
}
TEMPLATES = ("{a} {size} {colour} {shape} {phrase}", "{colour} {shape} {phrase}",
             "there is {a} {colour} {shape} {phrase}", "{a} {shape} in {colour} {phrase}")


@dataclass(frozen=True)
class FreeQuery:
    text: str
    colour: str
    shape: str
    event: str
    size: str | None  # None when the query does not name a size
    phrase: str = ""  # the new event phrase in ``text`` (empty: none)

    def in_caption_words(self) -> FreeQuery:
        """The same query with its event said as the captions say it ("moving left" for
        "drifting to the left"): the control that tells phrasing from recognition."""
        if not self.phrase:
            return self
        return replace(self, text=self.text.replace(self.phrase, self.event), phrase="")

    def matches(self, attributes: dict[str, Any], ignore: tuple[str, ...] = ()) -> bool:
        """Whether one object of the clip has every asked attribute (but those in ``ignore``)."""
        return any(all(_agrees(self, o, name) for name in ATTRIBUTES if name not in ignore)
                   for o in attributes.get("objects", ()))


ATTRIBUTES = ("colour", "shape", "event", "size")


def _agrees(q: FreeQuery, obj: dict[str, Any], name: str) -> bool:
    asked = getattr(q, name)
    return asked is None or obj[name] == asked  # an unasked size agrees with any


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def fill(template: str, **values: str) -> str:
    """Format ``template``; each ``{a}`` becomes "a" or "an" for the word after it."""
    parts = template.format(a="\0", **values).split("\0 ")
    return parts[0] + "".join(f"{_article(p)} {p}" for p in parts[1:])


def make_queries(attributes: Sequence[dict[str, Any]], n: int = 60, seed: int = 0) -> list[FreeQuery]:
    """``n`` queries about objects of the given clips (one query per sampled clip)."""
    rng = np.random.default_rng(seed)
    pool = [a for a in attributes if a.get("objects") and not a.get("relation")]
    out = []
    for i in rng.choice(len(pool), size=min(n, len(pool)), replace=False):
        obj = pool[int(i)]["objects"][0]
        template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
        phrase = NEW_PHRASES[obj["event"]][int(rng.integers(2))]
        with_size = "{size}" in template
        text = fill(template, size=obj["size"], colour=obj["colour"], shape=obj["shape"], phrase=phrase)
        size = obj["size"] if with_size else None
        out.append(FreeQuery(text, obj["colour"], obj["shape"], obj["event"], size, phrase))
    return out


def hit_rate(queries: Sequence[FreeQuery], search: Any, metadata_of: Any, k: int = 5) -> dict[str, Any]:
    """Search each query (``search(text, k) -> list of ids``) and check the top k.

    ``metadata_of(id) -> attributes``. Returns the fraction answered at 1 and at k, examples,
    and ``agreement``: the percentage of returned clips holding an object with each asked
    attribute on its own (size over the queries that ask one).
    """
    at1 = atk = 0
    examples = []
    agree: Counter[str] = Counter()
    asked: Counter[str] = Counter()
    for q in queries:
        clips = [metadata_of(i) for i in search(q.text, k)]
        hits = [q.matches(c) for c in clips]
        at1 += bool(hits and hits[0])
        atk += any(hits)
        examples.append({"query": q.text, "first_match_rank": hits.index(True) + 1 if any(hits) else None})
        for name in ATTRIBUTES:
            if getattr(q, name) is None:
                continue
            asked[name] += len(clips)
            agree[name] += sum(any(_agrees(q, o, name) for o in c.get("objects", ())) for c in clips)
    n = max(1, len(queries))
    return {"queries": len(queries), "hit@1": 100 * at1 / n, f"hit@{k}": 100 * atk / n, "examples": examples,
            "agreement": {name: 100 * agree[name] / asked[name] for name in ATTRIBUTES if asked[name]}}


def blind_rate(queries: Sequence[FreeQuery], corpus: Sequence[dict[str, Any]], k: int = 5,
               attribute: str = "shape") -> float:
    """Percentage of queries a ranking would answer in its top ``k`` if it put the clips right on every
    asked attribute but ``attribute`` first, in random order as to that one: per query, with n such clips
    of which m are right on everything, the chance that ``k`` draws without replacement include one of
    the m, 1 - C(n - m, k) / C(n, k). The bar above which a model must be reading that attribute."""
    total = 0.0
    for q in queries:
        candidates = [a for a in corpus if q.matches(a, ignore=(attribute,))]
        n, m = len(candidates), sum(q.matches(a) for a in candidates)
        total += 1.0 - math.comb(n - m, k) / math.comb(n, k) if n else 0.0
    return 100 * total / max(1, len(queries))


def is_lone(attributes: dict[str, Any]) -> bool:
    """A clip of one object and no relation: what :func:`event_recognition` is asked about."""
    return len(attributes.get("objects", ())) == 1 and not attributes.get("relation")


def event_captions(attributes: dict[str, Any], events: Sequence[str] = EVENTS) -> list[str]:
    """"a {size} {colour} {shape} {event}" of a lone clip's object, for each of ``events``."""
    obj = attributes["objects"][0]
    return [f"{_article(obj['size'])} {obj['size']} {obj['colour']} {obj['shape']} {e}" for e in events]


def event_recognition(encode_texts: Any, videos: Sequence[tuple[np.ndarray, dict[str, Any]]],
                      events: Sequence[str]) -> dict[str, Any]:
    """How well the model tells events apart: each lone-object clip (its embedding and attributes)
    against the captions "a {size} {colour} {shape} {event}" for every event, the rest of the
    caption its own. ``encode_texts(list of str) -> (N, D)``. Per event: clips, percentage whose
    best caption names the right event, and the wrong event chosen most often."""
    chosen: dict[str, Counter[str]] = {e: Counter() for e in events}
    for vec, attributes in videos:
        obj = attributes["objects"][0]
        emb = np.asarray(encode_texts(event_captions(attributes, events)), dtype=np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        v = np.asarray(vec, dtype=np.float32)
        chosen[obj["event"]][events[int(np.argmax(emb @ (v / np.linalg.norm(v))))]] += 1
    rows: dict[str, dict[str, Any]] = {}
    for e, counts in chosen.items():
        wrong = [other for other, _ in counts.most_common() if other != e]
        rows[e] = {"clips": counts.total(), "accuracy": 100 * counts[e] / max(1, counts.total()),
                   "confused_with": wrong[0] if wrong else None}
    clips = sum(c.total() for c in chosen.values())
    right = sum(chosen[e][e] for e in chosen)
    return {"clips": clips, "accuracy": 100 * right / max(1, clips), "events": rows}
