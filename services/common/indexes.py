"""The indexes a service declares: each on its collection, its keys in order, and the query it serves (``why``).

Each store lists its indexes as data (``INDEXES``) and creates them at start (``create_indexes``). The same lists
are what the index test checks every query shape of the integration suite against (tools/check/index_rule.py,
tools/check/indexes.py) and what docs/performance.md lists, generated from them.

An index keeps MongoDB's default name (``status_1_at_-1``, what ``name`` gives): a deployment made before these
lists has its indexes under those names, and the same keys under another name would fail (IndexOptionsConflict).
An index that extends an earlier one names it in ``replaces``: that one (found by its keys, whatever the server
named it) is dropped once the new one exists."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

from .mongo import Document

INDEX_NOT_FOUND = 27


@dataclass(frozen=True)
class Index:
    collection: str
    """The collection's name, or a pattern (``episodes_v*``) where a service names collections as it goes."""
    keys: tuple[tuple[str, int], ...]
    why: str
    """The queries it serves, in the clinic's words (docs/performance.md lists them)."""
    scope: str = ""
    """What one value of its first key holds at most, when that is few documents whatever the clinic's size (one
    patient's episodes): a query fixing that key reads no more than this, whatever else it filters on."""
    unique: bool = False
    sparse: bool = False
    replaces: tuple[str, ...] = ()
    """Names of indexes an earlier release made on these keys' prefix, which this one serves now: dropped."""
    options: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    """Further ``create_index`` options (``expireAfterSeconds``)."""

    @property
    def name(self) -> str:
        """MongoDB's default name for these keys."""
        return default_name(self.keys)

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(key for key, _ in self.keys)

    def on(self, collection: str) -> bool:
        return fnmatchcase(collection, self.collection)


def default_name(keys: Iterable[tuple[str, Any]]) -> str:
    """The name MongoDB gives an index of ``keys`` (a server may name it otherwise: nx-27017 does)."""
    return "_".join(f"{key}_{int(direction)}" for key, direction in keys)


async def create_index(collection: AsyncCollection[Document], index: Index, **options: Any) -> None:
    """Create ``index`` on ``collection`` (the same keys and options again: nothing happens), then drop what it
    replaces."""
    flags: dict[str, Any] = {"unique": True} if index.unique else {}
    flags |= {"sparse": True} if index.sparse else {}
    await collection.create_index(list(index.keys), **flags, **(index.options | options))
    if not index.replaces:
        return
    for name, info in (await collection.index_information()).items():
        if default_name(info["key"]) not in index.replaces:
            continue
        try:
            await collection.drop_index(name)
        except OperationFailure as error:
            if error.code != INDEX_NOT_FOUND:  # another instance starting dropped it first
                raise


async def create_indexes(database: AsyncDatabase[Document], indexes: Iterable[Index]) -> None:
    for index in indexes:
        await create_index(database[index.collection], index)
