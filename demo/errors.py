"""Exception types the library raises at its boundaries.

Every error a person can cause (a bad file, an empty query, a missing model or
index) is a :class:`DemoError`; the CLI turns it into one clear line and a
non-zero exit, and the app shows it as a message in the page.
"""

from __future__ import annotations


class DemoError(Exception):
    """Base class for errors caused by input, files or models, not by bugs."""


class VideoDecodeError(DemoError):
    """A file could not be decoded as a video (the message names the file and why)."""


class IndexFormatError(DemoError):
    """An index folder is missing, half-written, corrupt, or built with another model."""


class ModelLoadError(DemoError):
    """A model folder or id could not be loaded."""


class InputError(DemoError):
    """Bad user input: an empty query, no labels, too many labels, ..."""
