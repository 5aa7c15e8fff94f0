"""Label lists for zero-shot classification: parsing user text, prompt templates, presets.

Nothing heavy is imported here: the CLI and the UI parse labels before any model loads.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from demo.errors import InputError
from demo.presets import ASSETS

logger = logging.getLogger(__name__)

LABELS_DIR = ASSETS / "labels"

# X-CLIP runs one full forward per video with every label in the text batch, so the
# label count bounds the cost of a call. 400 is the largest list we ship (Kinetics-400,
# the classes microsoft/xclip-base-patch32 was trained on); a lower default would
# reject our own preset.
MAX_LABELS = 400

# Name -> one-line description, for a dropdown or `--help`.
LABEL_PRESETS: dict[str, str] = {
    "kinetics400": "the 400 Kinetics action classes (what microsoft/xclip-base-patch32 was trained on)",
    "embedded-events": "the event classes of the embedded procedural world (moving left, growing, ...)",
}

_SEPARATORS = re.compile(r"[,\n\r]")
_PLACEHOLDERS = ("{label}", "{}")


def parse_labels(text: str | Sequence[str], max_labels: int = MAX_LABELS) -> list[str]:
    """Turn user input into a clean label list.

    ``text`` is one string with labels separated by commas and/or newlines, or a list
    of strings (each may itself hold several comma/newline-separated labels). Labels
    are stripped, blanks are dropped, and case-insensitive duplicates are dropped
    keeping the first spelling.

    >>> parse_labels("cat, Dog\\n\\n dog ,cat")
    ['cat', 'Dog']

    Raises :class:`InputError` when nothing is left or when more than ``max_labels``
    remain.
    """
    parts = [text] if isinstance(text, str) else list(text)
    labels: list[str] = []
    seen: set[str] = set()
    for part in parts:
        if not isinstance(part, str):
            raise InputError(f"labels must be strings, got {type(part).__name__}: {part!r}")
        for raw in _SEPARATORS.split(part):
            label = " ".join(raw.split())  # strip and collapse inner runs of whitespace
            key = label.casefold()
            if label and key not in seen:
                seen.add(key)
                labels.append(label)
    if not labels:
        raise InputError(f"no labels given: separate labels with commas or newlines (got {text!r})")
    if len(labels) > max_labels:
        raise InputError(f"too many labels: got {len(labels)}, the limit is {max_labels}")
    return labels


def apply_template(labels: Sequence[str], template: str) -> list[str]:
    """Put each label into ``template`` at ``{label}`` or ``{}`` (e.g. ``"a video of {}"``).

    Plain substitution, not ``str.format``: labels and templates may hold other braces.

    >>> apply_template(["cooking", "dancing"], "a video of a person {label}")
    ['a video of a person cooking', 'a video of a person dancing']
    """
    if not any(p in template for p in _PLACEHOLDERS):
        raise InputError(
            f'template must contain "{{}}" or "{{label}}" where the label goes, got {template!r}'
        )
    prompts = []
    for label in labels:
        prompt = template
        for placeholder in _PLACEHOLDERS:
            prompt = prompt.replace(placeholder, label)
        prompts.append(prompt)
    return prompts


def load_preset(name: str) -> list[str]:
    """The label list of preset ``name`` (one of :data:`LABEL_PRESETS`), parsed and validated."""
    if name == "kinetics400":
        path = LABELS_DIR / "kinetics400.txt"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"label preset {name!r}: cannot read {path}: {exc}") from exc
        return parse_labels(text.splitlines())
    if name == "embedded-events":
        # Imported here: the world module pulls in rendering code the CLI does not need
        # just to list labels.
        from demo.world import event_labels

        return parse_labels(list(event_labels()))
    raise InputError(f"unknown label preset {name!r}; choose one of {sorted(LABEL_PRESETS)}")
