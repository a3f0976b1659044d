"""Ids derived from what identifies a thing, so that a decision made again names the same things.

A derived id is a UUID (version 5) written as text, as a random one is: ids stored or published before keep
their meaning, and a reader cannot tell the two apart.
"""

from __future__ import annotations

import uuid


def derived_id(namespace: uuid.UUID, *parts: object) -> str:
    """The id, in ``namespace``, of the thing that ``parts`` identify (their text, joined by ``|``)."""
    return str(uuid.uuid5(namespace, "|".join(str(part) for part in parts)))
