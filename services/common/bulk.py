"""The writes of one consumer batch sent together: one ``bulk_write`` (unordered) per collection instead of one
round trip per event.

A consumer batch applies its episodes concurrently, each a lane (``EventBatch``); while it runs, ``GATHERING`` holds
how many lanes still run. A handler's write joins the batch's ``BulkWrites`` buffer and waits for its own outcome;
the buffer is sent once every lane still running waits on it (or ``linger`` after its first write, or at
``at_once`` writes), so a lane busy reading delays the others a few milliseconds at most. Each write hears its own
outcome as if it were sent alone: nothing, or the ``WriteError`` (``DuplicateKeyError`` …) the server gave that
operation (the bulk result's ``writeErrors`` name each failing operation by its index); a failure of the whole
command (the server down, a write concern not met) reaches every write of it. Handlers await their writes, so the
batch's offsets are committed after every write of it is stored. Outside a consumer batch (an HTTP request, a
rebuild) a write is sent at once, alone.

A write's outcome per operation, not the result's counts, tells which version-checked write lost: express it as an
upsert filtered by its id and version (``versioned``), which fails with a duplicate key when the stored document is
at another version, rather than as an update that matches nothing.

A batch's questions to another service go the same way (``GatheredLookups``): notifications asks intake who may hear
of each episode of a batch in one request."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, Generic, NamedTuple, TypeVar

from pymongo import InsertOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DocumentTooLarge

from .mongo import Document, write_error
from .outcomes import retrieved, settle

Item = TypeVar("Item")
Question = TypeVar("Question")
Answer = TypeVar("Answer")


class Gathering:
    """The lanes of one consumer batch running at once: how many still run, for a buffer to send what they wrote
    once each waits on it."""

    def __init__(self, lanes: int) -> None:
        self.running = lanes
        self._watchers: list[Callable[[], None]] = []

    def watch(self, watcher: Callable[[], None]) -> None:
        """Call ``watcher`` whenever a lane finishes."""
        self._watchers.append(watcher)

    def finished(self) -> None:
        self.running -= 1
        for watcher in list(self._watchers):
            watcher()


GATHERING: ContextVar[Gathering | None] = ContextVar("gathering", default=None)
"""The consumer batch the running code belongs to (set by ``EventBatch``; None outside one)."""


Finish = Callable[[list[Any]], Coroutine[Any, Any, Any]]


class EpisodeRecords:
    """What handlers leave to do once the last of one episode's records in a consumer batch is applied: a read side
    collects the episode's events (``collect``) and stores its projection once, rather than once per event (the
    events one write of another service publishes come together). ``EventBatch`` awaits ``finish`` before the
    episode's lane ends, so the batch's offsets are still committed after every effect is stored; a failure of it
    is the failure of the episode's first record (the batch comes again, and everything is collected again)."""

    def __init__(self) -> None:
        self._collected: dict[Finish, list[Any]] = {}

    def collect(self, finish: Finish, item: Any) -> None:
        """Keep ``item`` for ``finish``, called once with all the items kept for it, in the order they came."""
        self._collected.setdefault(finish, []).append(item)

    def holds(self, finish: Finish) -> bool:
        """Whether any item is kept for ``finish``."""
        return finish in self._collected

    def take(self, finish: Finish) -> list[Any]:
        """The items kept for ``finish`` so far, no longer kept: the handler taking them stores them itself."""
        return self._collected.pop(finish, [])

    async def finish(self) -> None:
        collected, self._collected = self._collected, {}
        for finish, items in collected.items():
            await finish(items)


EPISODE_RECORDS: ContextVar[EpisodeRecords | None] = ContextVar("episode_records", default=None)
"""The episode whose records the running handler applies, in a consumer batch (None outside one, or while its
records are applied one at a time)."""


class Update(NamedTuple):
    """One write: an update of one document (an upsert inserts a document, as an insert would)."""

    filter: Document
    update: Document
    upsert: bool = False

    def operation(self) -> UpdateOne:
        return UpdateOne(self.filter, self.update, upsert=self.upsert)

    async def alone(self, collection: AsyncCollection[Document]) -> None:
        await collection.update_one(self.filter, self.update, upsert=self.upsert)


class Insert(NamedTuple):
    """One write: a new document (a duplicate key when one of its ``_id`` exists)."""

    document: Document

    def operation(self) -> InsertOne[Document]:
        return InsertOne(self.document)

    async def alone(self, collection: AsyncCollection[Document]) -> None:
        await collection.insert_one(self.document)


Write = Update | Insert


Waiting = list[tuple[AsyncCollection[Document], Write, asyncio.Future[None]]]


def versioned(
    document_id: str, version: int, fields: Document, appended: Mapping[str, Sequence[Any]] | None = None
) -> Update:
    """Store ``fields`` over the document at ``version`` (0: none yet), making it ``version + 1``, and add
    ``appended``'s entries, none of them stored yet, at the end of its arrays: an upsert, so that a document at
    another version fails this write alone, with a duplicate key on ``_id``."""
    update: Document = {"$set": {**fields, "version": version + 1}}
    if appended:
        # $addToSet of entries not in the array appends them in order, as $push does; $push of documents is what
        # the test stand-in (nx-27017) stores as JSON text (docs/development.md, "Backends").
        update["$addToSet"] = {key: {"$each": list(entries)} for key, entries in appended.items()}
    return Update({"_id": document_id, "version": version}, update, upsert=True)


class Gathered(Generic[Item]):
    """What the lanes of a consumer batch hand in, sent together by ``send_all`` once every lane still running waits
    on it, or ``linger`` seconds after the first, or at ``at_once`` (see the module's doc). Each item carries its
    own future: ``send_all`` settles them."""

    def __init__(
        self, send_all: Callable[[list[Item]], Coroutine[Any, Any, None]], linger: float, at_once: int
    ) -> None:
        self._send_all = send_all
        self.linger = linger
        self.at_once = at_once
        self._waiting: dict[Gathering, list[Item]] = {}
        self._lanes: dict[Gathering, int] = {}
        """How many lanes wait on what is gathered (each hands its items in at once, then waits on them)."""
        self._timers: dict[Gathering, asyncio.TimerHandle] = {}
        self._sending: set[asyncio.Task[None]] = set()

    def add(self, gathering: Gathering, item: Item) -> None:
        self.add_all(gathering, [item])

    def add_all(self, gathering: Gathering, items: Sequence[Item]) -> None:
        """What one lane hands in, and then waits on."""
        if gathering not in self._waiting:
            self._waiting[gathering] = []
            gathering.watch(lambda: self._lane_finished(gathering))
        self._waiting[gathering].extend(items)
        self._lanes[gathering] = self._lanes.get(gathering, 0) + 1
        self._check(gathering)

    def _lane_finished(self, gathering: Gathering) -> None:
        self._check(gathering)
        if gathering.running <= 0 and not self._waiting.get(gathering):  # the batch is over
            self._waiting.pop(gathering, None)
            self._lanes.pop(gathering, None)

    def _check(self, gathering: Gathering) -> None:
        waiting = self._waiting.get(gathering)
        if not waiting:
            return
        if len(waiting) >= self.at_once or self._lanes.get(gathering, 0) >= max(gathering.running, 1):
            self._send(gathering)
        elif gathering not in self._timers:
            self._timers[gathering] = asyncio.get_running_loop().call_later(self.linger, self._send, gathering)

    def _send(self, gathering: Gathering) -> None:
        timer = self._timers.pop(gathering, None)
        if timer is not None:
            timer.cancel()
        waiting = self._waiting.get(gathering)
        if not waiting:
            return
        self._waiting[gathering] = []
        self._lanes[gathering] = 0
        task = asyncio.create_task(self._send_all(waiting))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)


class BulkWrites:
    """A write-behind buffer per consumer batch (see the module's doc)."""

    def __init__(self, linger: float = 0.005, at_once: int = 500) -> None:
        self._gathered: Gathered[tuple[AsyncCollection[Document], Write, asyncio.Future[None]]] = Gathered(
            send, linger, at_once
        )

    async def write(self, collection: AsyncCollection[Document], operation: Write) -> None:
        """Send ``operation`` with the batch's other writes; raises its own ``WriteError`` as a lone write would."""
        [outcome] = await self.write_all(collection, [operation])
        if outcome is not None:
            raise outcome

    async def write_all(
        self, collection: AsyncCollection[Document], operations: Sequence[Write]
    ) -> list[Exception | None]:
        """Send ``operations`` with the batch's other writes (outside a batch: together, in one round trip); the
        outcome of each, in order: None (stored) or the ``WriteError`` a lone write would have raised."""
        loop = asyncio.get_running_loop()
        waiting: Waiting = [(collection, operation, loop.create_future()) for operation in operations]
        gathering = GATHERING.get()
        if gathering is None:
            await send(waiting)
        else:
            self._gathered.add_all(gathering, waiting)
        for _, _, done in waiting:
            done.add_done_callback(retrieved)  # each is read below, unless an earlier one's cancellation ends it
        outcomes: list[Exception | None] = []
        for _, _, done in waiting:
            try:
                await done
            except Exception as error:
                outcomes.append(error)
            else:
                outcomes.append(None)
        return outcomes


class GatheredLookups(Generic[Question, Answer]):
    """A consumer batch's lanes' questions to another service asked in one request (``ask_all``, answering each in
    order) as its writes go in one round trip; outside a batch a question is asked at once, alone. A failure of the
    request reaches each question of it."""

    def __init__(
        self,
        ask_all: Callable[[list[Question]], Coroutine[Any, Any, list[Answer]]],
        linger: float = 0.005,
        at_once: int = 100,
    ) -> None:
        self._ask_all = ask_all
        self._gathered: Gathered[tuple[Question, asyncio.Future[Answer]]] = Gathered(self._answer, linger, at_once)

    async def ask(self, question: Question) -> Answer:
        gathering = GATHERING.get()
        if gathering is None:
            [answer] = await self._ask_all([question])
            return answer
        done: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._gathered.add(gathering, (question, done))
        return await done

    async def _answer(self, waiting: list[tuple[Question, asyncio.Future[Answer]]]) -> None:
        try:
            answers = await self._ask_all([question for question, _ in waiting])
        except BaseException as error:
            for _, done in waiting:
                if not done.done():
                    done.set_exception(error)
                    done.add_done_callback(retrieved)
            if not isinstance(error, Exception):
                raise
            return
        for (_, done), answer in zip(waiting, answers, strict=True):
            if not done.done():
                done.set_result(answer)


async def send(waiting: Waiting) -> None:
    """One ``bulk_write`` per collection and kind of write (inserts apart from updates: each kind is its own command
    anyway, and updates re-sent alone, below, are never inserts); each write's future gets its outcome."""
    by_collection: dict[tuple[str, type], Waiting] = {}
    for one in waiting:
        by_collection.setdefault((one[0].full_name, type(one[1])), []).append(one)
    try:
        for writes in by_collection.values():
            await _bulk(writes)
    finally:
        for _, _, done in waiting:
            if not done.done():  # cancelled while sending: the writes' outcome is unknown
                done.cancel()


async def _bulk(writes: Waiting) -> None:
    collection = writes[0][0]
    try:
        await collection.bulk_write([update.operation() for _, update, _ in writes], ordered=False)
    except KeyError:
        # FerretDB 1.24 answers an update command with write errors without its nModified, which PyMongo needs to
        # read a bulk result: each alone then (an update_one reads its answer without it). Safe: the writes are
        # version-checked, so one that was stored already fails now as a lost race, read again and found applied
        # (updates only: an insert command's answer has no nModified to miss).
        for one in writes:
            await _alone(*one)
        return
    except BulkWriteError as error:
        failed = {entry["index"]: entry for entry in error.details.get("writeErrors", [])}
        if error.details.get("writeConcernErrors"):
            _fail(writes, error)
            return
        for index, (_, _, done) in enumerate(writes):
            if index in failed:
                settle(done, write_error(failed[index]))
            else:
                settle(done, None)
        return
    except DocumentTooLarge as error:
        if len(writes) == 1:
            _fail(writes, error)
            return
        # One operation is too large to send: each alone, so that only its own write fails. PyMongo refuses it while
        # it builds the command, before sending it; only a bulk of more than one command's worth (48 MB) may have
        # sent one already, whose inserts then find their documents there (a duplicate key: "existed").
        for one in writes:
            await _alone(*one)
        return
    except Exception as error:
        _fail(writes, error)
        return
    for _, _, done in writes:
        settle(done, None)


async def _alone(collection: AsyncCollection[Document], write: Write, done: asyncio.Future[None]) -> None:
    try:
        await write.alone(collection)
    except Exception as error:
        settle(done, error)
    else:
        settle(done, None)


def _fail(writes: Waiting, error: BaseException) -> None:
    for _, _, done in writes:
        settle(done, error)
