"""Telling whether a patient is registered already (pure)."""

from __future__ import annotations

import hashlib
import unicodedata
from datetime import date


def match_key(name: str, date_of_birth: date | str) -> str:
    """What two registrations of one person share: the name without case or whitespace (Unicode-normalised, so
    "Zoë" typed either way is one name) and the birth date. Kept as a hash, next to the record it points to."""
    folded = "".join(unicodedata.normalize("NFKC", name).casefold().split())
    born = date_of_birth.isoformat() if isinstance(date_of_birth, date) else date_of_birth
    return hashlib.sha256(f"{folded}|{born}".encode()).hexdigest()


SHORTEST_PREFIX = 3
"""A name search needs at least this many letters of a name: fewer would list half the clinic."""


def name_tokens(text: str) -> list[str]:
    """The words of a name as a search compares them: Unicode-normalised, accents and case aside ("Zoë" and "zoe"
    are one word), split at spaces, hyphens and apostrophes."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(char for char in decomposed if not unicodedata.combining(char)).casefold()
    for separator in "-'’.,":
        plain = plain.replace(separator, " ")
    return [token for token in plain.split() if token]


def name_prefixes(name: str) -> list[str]:
    """What a patient's record is found by: every prefix of at least ``SHORTEST_PREFIX`` letters of each word of
    the name, and each whole word (a short one too), kept sorted and once each (a multikey index serves it)."""
    prefixes: set[str] = set()
    for token in name_tokens(name):
        prefixes.add(token)
        prefixes.update(token[:end] for end in range(SHORTEST_PREFIX, len(token)))
    return sorted(prefixes)


def search_terms(name: str) -> list[str] | None:
    """The words a name search must find (each a prefix of a word of the name), or None when no word of it has
    ``SHORTEST_PREFIX`` letters."""
    tokens = name_tokens(name)
    if not any(len(token) >= SHORTEST_PREFIX for token in tokens):
        return None
    return sorted(set(tokens))
