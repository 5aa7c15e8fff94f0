"""Free-form queries: new phrasings made only of words the captions use."""

import re

from demo.evaluate_queries import NEW_PHRASES, FreeQuery, hit_rate, make_queries
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
    attributes = {s.id: s.attributes for s in specs}
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
    queries = make_queries([s.attributes for s in specs], n=30, seed=2)
    for q in queries:
        assert q.phrase in NEW_PHRASES[q.event] and q.phrase in q.text
        control = q.in_caption_words()
        assert control.text == q.text.replace(q.phrase, q.event) and q.event in control.text
        assert (control.colour, control.shape, control.event, control.size) == (q.colour, q.shape, q.event, q.size)
        assert control.in_caption_words() == control
