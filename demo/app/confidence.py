"""Saying when an answer deserves little trust: words the model never saw, scores below real matches.

A retrieval model always returns its nearest neighbours, so a query about a dog returns the
embedded world's shapes at a score that looks like any other. Two checks tell a person so:

* **unknown words** (models of the embedded world only): query words that appear in none of the
  index's captions nor the world's vocabulary. The text tower tokenises them (it has CLIP's full
  vocabulary) but never learned what they mean. Words are compared by a crude stem, so
  "slides" counts as known when the captions say "sliding".
* **a low best score**: below the score that 95% of the index's own captions reach against
  their own video. Measured once per index from its caption embeddings, so it holds for any
  model and any index that has them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from demo.index.video_index import VideoIndex

_WORD = re.compile(r"[a-z]+")
_SUFFIXES = ("ing", "ed", "es", "s", "ly")
LOW_PERCENTILE = 5.0  # a best score under this percentile of real matches' scores is "low"


def stem(word: str) -> str:
    """A crude stem: one common English suffix off a longer word.

    >>> [stem(w) for w in ("sliding", "slides", "circles", "red", "bounces")]
    ['slid', 'slid', 'circl', 'red', 'bounc']
    """
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word.removesuffix("e") if len(word) > 3 else word


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class QueryCheck:
    """What one index and model count as known words and as a real match's score."""

    known: frozenset[str] | None  # stems the model was trained on (None: a general-domain model)
    low_score: float | None  # best scores under this are low (None: the index has no captions)

    @classmethod
    def for_index(cls, index: VideoIndex, vocabulary: Iterable[str] | None, sample: int = 2000,
                  seed: int = 0) -> QueryCheck:
        """Known words from the index's captions plus ``vocabulary`` (None: skip the word check),
        and the low-score line from up to ``sample`` of its captions against their own videos."""
        known = None
        if vocabulary is not None:
            texts = [c for row in index.metadata for c in row.get("captions") or []]
            known = frozenset(stem(w) for text in [*texts, *vocabulary] for w in words(str(text)))
        low = None
        m = len(index.caption_video)
        if m:
            rows = np.random.default_rng(seed).choice(m, size=min(m, sample), replace=False)
            rows.sort()
            captions = np.asarray(index.caption_embeddings[rows], dtype=np.float32)
            videos = np.asarray(index.embeddings[np.asarray(index.caption_video)[rows]], dtype=np.float32)
            low = float(np.percentile(np.einsum("ij,ij->i", captions, videos), LOW_PERCENTILE))
        return cls(known, low)

    def unknown_words(self, query: str) -> list[str]:
        """The query's words the model never saw in training, in order, once each."""
        if self.known is None:
            return []
        return list(dict.fromkeys(w for w in words(query) if stem(w) not in self.known))

    def notes(self, query: str, best: float | None) -> list[str]:
        """Plain sentences about why these results may not fit the query (empty: nothing to say)."""
        out = []
        unknown = self.unknown_words(query)
        if unknown:
            shown = ", ".join(f"“{w}”" for w in unknown[:6])
            out.append(f"The model never saw {shown} in training: it knows only the rendered world's words "
                       "(listed at the top), so these results are its nearest guesses.")
        if best is not None and self.low_score is not None and best < self.low_score:
            out.append(f"The best match scores {best:.2f}, below what {100 - LOW_PERCENTILE:.0f}% of real matches "
                       f"in this index score ({self.low_score:.2f}): probably nothing here fits the query.")
        return out
