"""A query as typed, made searchable: no invisible characters, bounded length.

Light on purpose (no torch, no index): the command line checks a query with it before it loads a model.
"""

from __future__ import annotations

import unicodedata

from demo.errors import InputError

MAX_QUERY_CHARS = 1000  # longer text is cut here; the tokenizer then truncates to the model's context


def clean_query(text: str | None) -> str:
    """Strip and bound a query; an empty one (nothing but spaces, control or invisible characters
    such as NUL or zero-width spaces) is an InputError with a hint.

    >>> clean_query("  a red\\u200b circle\\x00  moving left ")
    'a red circle moving left'
    """
    visible = "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in (text or "")
                      if unicodedata.category(c) not in ("Cf", "Cs", "Co", "Cn"))
    query = " ".join(visible.split())
    if not query:
        raise InputError("the query is empty: type what should happen in the video, "
                         "e.g. 'a red circle moving left'")
    return query[:MAX_QUERY_CHARS]
