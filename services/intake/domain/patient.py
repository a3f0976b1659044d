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
