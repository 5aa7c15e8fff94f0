"""CLIP's BPE tokenizer built from the merge list, and cutting a checkpoint's vocabulary."""

import json

import numpy as np
import pytest

from demo.models.encoders import Clip4ClipEncoder
from demo.models.tokenizer import shrink_vocabulary
from demo.world import vocabulary

WORLD_TEXTS = ["a small green star drifting to the right", "the red circle shrinks over a checkered background",
               "two hearts approaching each other", "a hexagon fading out on a dusk background"]


@pytest.fixture(scope="module")
def shrunk(tiny_clip4clip, tmp_path_factory):
    texts = WORLD_TEXTS + [w for words in vocabulary().values() for w in words]
    out = tmp_path_factory.mktemp("shrunk") / "small"
    stats = shrink_vocabulary(tiny_clip4clip, out, texts)
    return out, stats


def test_shrunk_vocabulary_keeps_outputs_on_its_texts(tiny_clip4clip, shrunk):
    out, stats = shrunk
    config = json.loads((out / "config.json").read_text())["text_config"]
    assert 512 < stats["tokens"] == config["vocab_size"] < 2000  # from 49,408
    full, small = Clip4ClipEncoder.from_pretrained(tiny_clip4clip), Clip4ClipEncoder.from_pretrained(out)
    np.testing.assert_array_equal(full.encode_texts(WORLD_TEXTS), small.encode_texts(WORLD_TEXTS))
    # The pooled (end-of-text) token moved with the renumbering.
    assert small.tokenize(["red"])["input_ids"][0].tolist()[-1] == config["eos_token_id"]
    assert (out / "model.safetensors").stat().st_size < (tiny_clip4clip / "model.safetensors").stat().st_size / 4


def test_shrunk_vocabulary_still_tokenises_any_text(shrunk):
    out, _ = shrunk
    small = Clip4ClipEncoder.from_pretrained(out)
    ids = small.tokenize(["a zebra crossing, 東京"])["input_ids"][0]
    assert len(ids) > 4 and int(ids.max()) < small.model.text.config.vocab_size
