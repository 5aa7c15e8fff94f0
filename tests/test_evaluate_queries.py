"""Free-form queries: new phrasings made only of words the captions use."""

import re

from demo.evaluate.queries import (
    NEW_PHRASES,
    FreeQuery,
    blind_rate,
    event_recognition,
    hit_rate,
    make_queries,
)
from demo.world import WorldConfig, clip_specs, vocabulary


def test_phrases_are_new_but_made_of_known_words():
    vocab = vocabulary()
    known_phrases = set(vocab["event_phrases"])
    known_words = {w for kind in vocab.values() for phrase in kind for w in re.findall(r"[a-z]+", phrase)}
    assert set(NEW_PHRASES) == set(vocab["events"])
    for phrases in NEW_PHRASES.values():
        for phrase in phrases:
            assert phrase not in known_phrases, phrase
            assert set(phrase.split()) <= known_words | {"and"}, phrase


def test_queries_describe_their_clip_and_hit_rate_counts_matches():
    specs = clip_specs(WorldConfig(), "test")[:200]
    attributes = {s.id: s.attributes.to_dict() for s in specs}
    queries = make_queries(list(attributes.values()), n=20, seed=1)
    assert len(queries) == 20
    for q in queries:
        assert q.colour in q.text and q.shape in q.text
        assert any(q.matches(a) for a in attributes.values())
    # A perfect searcher (returns a matching clip first) and a useless one (never matches).
    ids = list(attributes)

    def perfect(text, k):
        q = next(q for q in queries if q.text == text)
        return [next(i for i in ids if q.matches(attributes[i]))]

    assert hit_rate(queries, perfect, attributes.__getitem__)["hit@1"] == 100
    never = FreeQuery("x", "nocolour", "noshape", "moving left", None)
    assert hit_rate([never], lambda t, k: ids[:k], attributes.__getitem__)["hit@5"] == 0


def test_caption_words_control_says_the_event_as_the_captions_do():
    specs = clip_specs(WorldConfig(), "test")[:200]
    queries = make_queries([s.attributes.to_dict() for s in specs], n=30, seed=2)
    for q in queries:
        assert q.phrase in NEW_PHRASES[q.event] and q.phrase in q.text
        control = q.in_caption_words()
        assert control.text == q.text.replace(q.phrase, q.event) and q.event in control.text
        assert (control.colour, control.shape, control.event, control.size) == (q.colour, q.shape, q.event, q.size)
        assert control.in_caption_words() == control


def _clip(*objects):
    return {"objects": [dict(zip(("colour", "shape", "event", "size"), o, strict=True)) for o in objects]}


def test_agreement_counts_each_asked_attribute_in_the_top_k():
    corpus = {"a": _clip(("red", "star", "moving left", "small")),
              "b": _clip(("red", "heart", "moving left", "large")),
              "c": _clip(("blue", "star", "growing", "small"), ("red", "cross", "bouncing", "small"))}
    sized = FreeQuery("q1", "red", "star", "moving left", "small")
    unsized = FreeQuery("q2", "red", "star", "moving left", None)
    result = hit_rate([sized, unsized], lambda text, k: ["b", "c"], corpus.__getitem__, k=2)
    assert result["hit@2"] == 0
    # colour: b and c (c's second object) for both queries; shape: only c's first object;
    # event: b only; size: only the sized query asks, and c holds a small object.
    assert result["agreement"] == {"colour": 100.0, "shape": 50.0, "event": 50.0, "size": 50.0}


def test_blind_rate_is_the_chance_of_drawing_a_right_shape():
    # Four clips right on colour and event, one of them also on shape: k = 1 draws it 1 time in 4,
    # k = 2 misses it only when both draws come from the other three: 1 - C(3, 2) / C(4, 2) = 1/2.
    corpus = [_clip(("red", s, "moving left", "small")) for s in ("star", "heart", "cross", "square")]
    corpus.append(_clip(("blue", "star", "moving left", "small")))  # wrong colour: not a candidate
    q = FreeQuery("q", "red", "star", "moving left", None)
    assert blind_rate([q], corpus, k=1) == 25.0
    assert blind_rate([q], corpus, k=2) == 50.0
    assert blind_rate([q], corpus, k=4) == 100.0
    assert blind_rate([FreeQuery("q", "green", "star", "moving left", None)], corpus, k=2) == 0.0


def test_event_recognition_scores_each_lone_clip_against_every_event():
    import numpy as np

    events = ("moving left", "moving right", "growing")
    axis = {e: np.eye(3)[i] for i, e in enumerate(events)}

    def encode(texts):  # a text model that reads only the event at the end of the caption
        return np.stack([next(axis[e] for e in events if t.endswith(e)) for t in texts])

    def lone(event):
        return _clip(("red", "star", event, "small"))

    videos = [(axis["moving left"], lone("moving left")), (axis["moving left"], lone("moving right")),
              (axis["moving right"] + 0.1 * axis["growing"], lone("moving right")),
              (axis["growing"], lone("growing"))]
    result = event_recognition(encode, videos, events)
    assert result["clips"] == 4 and result["accuracy"] == 75.0
    assert result["events"]["moving right"] == {"clips": 2, "accuracy": 50.0, "confused_with": "moving left"}
    assert result["events"]["moving left"] == {"clips": 1, "accuracy": 100.0, "confused_with": None}


def _object(colour: str, shape: str, event: str) -> dict:
    return {"objects": [{"colour": colour, "shape": shape, "event": event, "size": "small"}]}


def test_compositional_triples_need_every_pair_elsewhere_with_another_third():
    from demo.evaluate.compositional import compositional_triples

    index = [_object("green", "star", "moving left"), _object("green", "star", "growing"),
             _object("green", "circle", "moving left"), _object("white", "star", "moving left"),
             _object("red", "square", "shrinking")]
    # green star moving left: a green star growing, a green circle and a white star moving left
    assert compositional_triples(index) == {("green", "star", "moving left")}
    assert compositional_triples(index[:3]) == set()  # no star moving left in another colour


def test_a_ranking_blind_to_one_attribute_fails_the_compositional_set():
    """A model that ignores colour finds the asked shape and event but ranks the distractor (another colour)
    as often as the match: the set catches it, and its blind rate says what chance alone gives."""
    from demo.evaluate.compositional import compositional_queries, evaluate_compositional

    rows = {"match": _object("green", "star", "moving left"),
            "other-colour": _object("white", "star", "moving left"),
            "other-shape": _object("green", "circle", "moving left"),
            "other-event": _object("green", "star", "growing")}
    rows.update({f"filler-{i}": _object("red", "square", "shrinking") for i in range(6)})
    test = [rows["match"]]
    queries = compositional_queries(test, list(rows.values()), n=5, seed=0)
    assert len(queries) == 1 and (queries[0].colour, queries[0].shape, queries[0].event) == \
        ("green", "star", "moving left") and "green" in queries[0].text and "star" in queries[0].text

    def colour_blind(text: str, k: int) -> list[str]:  # shape and event right, colour ignored: distractor first
        return ["other-colour", "match", *[f"filler-{i}" for i in range(6)]][:k]

    def binds(text: str, k: int) -> list[str]:
        return ["match", "other-colour", "other-shape", "other-event"][:k]

    blind = evaluate_compositional(colour_blind, rows, test, k=1)
    right = evaluate_compositional(binds, rows, test, k=1)
    assert blind["hit@1"] == 0.0 and right["hit@1"] == 100.0
    assert blind["agreement"]["colour"] == 0.0 and blind["agreement"]["shape"] == 100.0
    # blind to colour, a ranking picks between the match and the white star: 50% at k = 1
    assert right["blind"] == {"colour": 50.0, "shape": 50.0, "event": 50.0}
