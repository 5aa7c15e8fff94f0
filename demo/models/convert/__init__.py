"""Checkpoints of other code bases into this project's folder format (a Hugging Face CLIP folder,
``clip4clip.json`` and the temporal head files), each computing as the code it came from:

* :mod:`~demo.models.convert.clip4clip`: the CLIP4Clip code's ``pytorch_model.bin.N``;
* :mod:`~demo.models.convert.clip2video`: CLIP2Video's (TDB and TAB heads);
* :mod:`~demo.models.convert.mmaction2`: MMAction2's CLIP4Clip ``.pth`` (mean adapter).

:mod:`~demo.models.convert.openai` holds what they share: OpenAI-named CLIP towers and the writer.
"""

from demo.models.convert.clip4clip import convert_clip4clip, detect_pooling, head_weights
from demo.models.convert.openai import read_checkpoint

__all__ = ["convert_clip4clip", "detect_pooling", "head_weights", "read_checkpoint"]
