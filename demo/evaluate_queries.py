"""Free-form queries: vocabulary words in phrasings the training captions never used.

A person types "a small green star drifting to the right", not the caption grammar the
model was trained on. This check builds such queries from test clips' objects (so at
least one matching clip exists), searches the shipped index, and counts a query as
answered when a clip holding an object with the asked colour, shape and event (and size,
when asked) is among the top ``k``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

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

    def matches(self, attributes: dict[str, Any]) -> bool:
        return any(o["colour"] == self.colour and o["shape"] == self.shape and o["event"] == self.event
                   and (self.size is None or o["size"] == self.size)
                   for o in attributes.get("objects", ()))


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _fill(template: str, **values: str) -> str:
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
        text = _fill(template, size=obj["size"], colour=obj["colour"], shape=obj["shape"], phrase=phrase)
        size = obj["size"] if with_size else None
        out.append(FreeQuery(text, obj["colour"], obj["shape"], obj["event"], size, phrase))
    return out


def hit_rate(queries: Sequence[FreeQuery], search: Any, metadata_of: Any, k: int = 5) -> dict[str, Any]:
    """Search each query (``search(text, k) -> list of ids``) and check the top k.

    ``metadata_of(id) -> attributes``. Returns the fraction answered at 1 and at k, and examples.
    """
    at1 = atk = 0
    examples = []
    for q in queries:
        ids = search(q.text, k)
        hits = [q.matches(metadata_of(i)) for i in ids]
        at1 += bool(hits and hits[0])
        atk += any(hits)
        examples.append({"query": q.text, "first_match_rank": hits.index(True) + 1 if any(hits) else None})
    n = max(1, len(queries))
    return {"queries": len(queries), "hit@1": 100 * at1 / n, f"hit@{k}": 100 * atk / n, "examples": examples}


def evaluate_freeform(index_dir: str | Any, test_attributes: Sequence[dict[str, Any]], n: int = 60,
                      k: int = 5, seed: int = 0, device: str | None = None) -> dict[str, Any]:
    """Free-form queries about test clips, searched (exactly) in the index with its own model.

    ``caption_words`` holds the hit rates of the same queries with each event said in the
    captions' own words: the gap to it is what the new phrasings cost, the rest is recognition.
    """
    from demo.search import open_searcher

    searcher = open_searcher(index=str(index_dir), device=device)
    rows = {str(r["id"]): r.get("attributes") or {} for r in searcher.index.metadata}

    def search(text: str, kk: int) -> list[str]:
        return [h.id for h in searcher.search_text(text, k=kk, exact=True)]

    queries = make_queries(test_attributes, n, seed)
    result = hit_rate(queries, search, rows.__getitem__, k)
    control = hit_rate([q.in_caption_words() for q in queries], search, rows.__getitem__, k)
    return {**result, "index_size": len(rows),
            "caption_words": {key: value for key, value in control.items() if key.startswith("hit@")}}
