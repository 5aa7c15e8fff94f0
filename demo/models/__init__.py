"""The models: CLIP4Clip (towers, temporal heads, encoders, tokenizer), X-CLIP, and fingerprints.

``clip4clip`` and ``temporal`` are the model, ``encoders`` its numpy embedding API,
``tokenizer`` CLIP's vocabulary, ``xclip`` and ``labels`` zero-shot classification, and
``fingerprint`` what an embedding depends on (how indexes name the model that built them).
Import from the module that holds a name.
"""
