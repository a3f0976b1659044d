"""Encrypted backups of Stepwise's MongoDB databases, over the driver (MongoDB's own mongodump is not served by the
Go module proxy this project builds its tools from; docs/operations.md, "Backups and restore").

    python -m tools.deploy.backup dump --dir /backups                 # one encrypted file for all databases
    python -m tools.deploy.backup restore /backups/stepwise-….backup  # into the databases it holds (dropped first)
    python -m tools.deploy.backup schedule --dir /backups --at 02:30 --keep-days 35   # compose's nightly job
    python -m tools.deploy.backup prune --dir /backups --keep-days 35

Settings are the environment: MONGODB_URL_FILE (or MONGODB_URL), BACKUP_KEY_FILE, BACKUP_DATABASES (comma
separated; default every service's database, the ones tools/deploy/secrets.py's MONGODB_USERS names). Each
collection is dumped as it is stored (raw BSON, every type kept), with its indexes; the whole is a tar stream
encrypted as it is written (AES-256-GCM in 1 MiB chunks, each chunk's number and whether it is the last one
authenticated, so a cut or reordered file is refused), with a
key derived from the secret file. Nothing unencrypted is written to disk: a collection is held in memory while it
is dumped or restored.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import struct
import sys
import tarfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import bson
from bson import json_util
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pymongo import AsyncMongoClient

from tools.deploy.secrets import MONGODB_USERS

MAGIC = b"STEPWISE-BACKUP-1\n"
CHUNK = 1 << 20
SALT_BYTES, PREFIX_BYTES = 16, 7
DATABASES = tuple(MONGODB_USERS.values())
"""Every service's database, from the one map of who owns which (the users the deployment makes)."""
SUFFIX = ".backup"
RAW = CodecOptions(document_class=RawBSONDocument, tz_aware=True)
INSERT_BATCH = 1000
INDEX_OPTIONS = ("unique", "sparse", "partialFilterExpression", "expireAfterSeconds")


def derive_key(secret: bytes, salt: bytes) -> bytes:
    """The file's AES-256 key: HKDF-SHA256 of the secret file's content with the file's own salt."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"stepwise backup v1").derive(secret.strip())


def _nonce(prefix: bytes, number: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", number, int(last))


class EncryptingWriter(io.RawIOBase):
    """A write-only stream that encrypts what it is given into ``target``, chunk by chunk; ``close`` writes the
    last chunk (the one whose nonce says it is last: without it, a reader refuses the file as cut)."""

    def __init__(self, target: IO[bytes], secret: bytes) -> None:
        salt, self.prefix = os.urandom(SALT_BYTES), os.urandom(PREFIX_BYTES)
        self.aead, self.target, self.number, self.pending = AESGCM(derive_key(secret, salt)), target, 0, b""
        target.write(MAGIC + salt + self.prefix)

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.pending += bytes(data)
        while len(self.pending) > CHUNK:
            self._chunk(self.pending[:CHUNK], last=False)
            self.pending = self.pending[CHUNK:]
        return len(data)

    def _chunk(self, plain: bytes, last: bool) -> None:
        sealed = self.aead.encrypt(_nonce(self.prefix, self.number, last), plain, MAGIC)
        self.target.write(struct.pack(">I", len(sealed)) + sealed)
        self.number += 1

    def close(self) -> None:
        if not self.closed:
            self._chunk(self.pending, last=True)
            self.pending = b""
        super().close()


def decrypted(source: IO[bytes], secret: bytes) -> Iterator[bytes]:
    """The plaintext chunks of an encrypted backup; ValueError if it is not one, was made with another key, or was
    cut, changed or reordered."""
    header = source.read(len(MAGIC) + SALT_BYTES + PREFIX_BYTES)
    if not header.startswith(MAGIC):
        raise ValueError("not a Stepwise backup (its first bytes are not the format's)")
    salt, prefix = header[len(MAGIC) : len(MAGIC) + SALT_BYTES], header[len(MAGIC) + SALT_BYTES :]
    aead, number = AESGCM(derive_key(secret, salt)), 0
    while size := source.read(4):
        plain, last = _open(aead, prefix, number, source.read(struct.unpack(">I", size)[0]))
        yield plain
        number += 1
        if last:
            if source.read(1):
                raise ValueError("the backup goes on after its last chunk")
            return
    raise ValueError("the backup is cut short (its last chunk is missing)")


def _open(aead: AESGCM, prefix: bytes, number: int, sealed: bytes) -> tuple[bytes, bool]:
    """A chunk's plaintext, and whether it is the last one (which its nonce says)."""
    for last in (False, True):
        try:
            return aead.decrypt(_nonce(prefix, number, last), sealed, MAGIC), last
        except InvalidTag:
            continue
    raise ValueError(f"chunk {number} does not decrypt: another key, or the file was changed")


class ChunkReader(io.RawIOBase):
    """The decrypted chunks as a readable stream (for tarfile)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks, self.buffer = chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self.buffer:
            try:
                self.buffer = next(self.chunks)
            except StopIteration:
                return 0
        size = min(len(target), len(self.buffer))
        target[:size], self.buffer = self.buffer[:size], self.buffer[size:]
        return size


@dataclass
class Manifest:
    """What a backup holds: when it was taken, and each collection's document count."""

    taken_at: str
    counts: dict[str, dict[str, int]] = field(default_factory=dict)


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(time.time()), 0o600
    archive.addfile(info, io.BytesIO(data))


async def dump(client: AsyncMongoClient[Any], databases: Sequence[str], target: IO[bytes], secret: bytes) -> Manifest:
    """Every collection of ``databases`` (raw BSON, and its indexes) into ``target``, encrypted; what it holds."""
    manifest = Manifest(datetime.now(UTC).isoformat())
    writer = EncryptingWriter(target, secret)
    with tarfile.open(fileobj=writer, mode="w|") as archive:
        for name in databases:
            database = client.get_database(name, codec_options=RAW)
            manifest.counts[name] = {}
            for collection_name in sorted(await database.list_collection_names()):
                collection = database[collection_name]
                documents = [document.raw async for document in collection.find({}, sort=[("_id", 1)])]
                indexes = [dict(index) async for index in await collection.list_indexes()]
                _add(archive, f"{name}/{collection_name}.bson", b"".join(documents))
                _add(archive, f"{name}/{collection_name}.indexes.json", json_util.dumps(indexes).encode())
                manifest.counts[name][collection_name] = len(documents)
        _add(archive, "manifest.json", json.dumps(manifest.__dict__, indent=2).encode())
    writer.close()
    return manifest


async def restore(client: AsyncMongoClient[Any], source: IO[bytes], secret: bytes) -> Manifest:
    """The databases a backup holds, each dropped and then written back as it was dumped, indexes included; what
    it restored. Meant for stopped services (docs/operations.md). The whole file is checked first (``source`` is read
    twice): a backup that does not decrypt, or is cut short, changes nothing."""
    for _ in decrypted(source, secret):
        pass
    source.seek(0)
    restored: dict[str, dict[str, int]] = {}
    manifest: dict[str, Any] = {}
    with tarfile.open(fileobj=ChunkReader(decrypted(source, secret)), mode="r|") as archive:
        for member in archive:
            data = archive.extractfile(member)
            content = data.read() if data else b""
            if member.name == "manifest.json":
                manifest = json.loads(content)
                continue
            database_name, _, file_name = member.name.partition("/")
            if database_name not in restored:
                await client.drop_database(database_name)
                restored[database_name] = {}
            collection = client.get_database(database_name, codec_options=RAW)[file_name.split(".")[0]]
            if file_name.endswith(".indexes.json"):
                await _create_indexes(collection, json_util.loads(content))
            else:
                restored[database_name][collection.name] = await _insert_raw(collection, content)
    if restored != manifest.get("counts"):
        raise ValueError(f"restored {restored}, but the backup's manifest says {manifest.get('counts')}")
    return Manifest(manifest["taken_at"], restored)


async def _insert_raw(collection: Any, content: bytes) -> int:
    documents = bson.decode_all(content, RAW)
    await collection.database.create_collection(collection.name)
    for start in range(0, len(documents), INSERT_BATCH):
        await collection.insert_many(documents[start : start + INSERT_BATCH], ordered=True)
    return len(documents)


async def _create_indexes(collection: Any, indexes: list[dict[str, Any]]) -> None:
    for index in indexes:
        if index["name"] == "_id_":
            continue
        options = {option: index[option] for option in INDEX_OPTIONS if option in index}
        await collection.create_index(list(index["key"].items()), name=index["name"], **options)


def backup_name(now: datetime) -> str:
    return f"stepwise-{now.strftime('%Y%m%dT%H%M%SZ')}{SUFFIX}"


def prune(folder: Path, keep_days: int, now: datetime) -> list[Path]:
    """Removes the backups in ``folder`` older than ``keep_days`` (by the time in their name); those removed."""
    removed = []
    for path in sorted(folder.glob(f"stepwise-*{SUFFIX}")):
        taken = datetime.strptime(path.name.removeprefix("stepwise-").removesuffix(SUFFIX), "%Y%m%dT%H%M%SZ")
        if now - taken.replace(tzinfo=UTC) > timedelta(days=keep_days):
            path.unlink()
            removed.append(path)
    return removed


def _secret_file(variable: str) -> bytes:
    path = os.environ.get(variable)
    if not path:
        raise SystemExit(f"{variable} is not set: it names the secret file")
    content = Path(path).read_bytes()
    if not content.strip():
        raise SystemExit(f"{variable} names an empty file")
    return content


def _mongodb_url() -> str:
    if os.environ.get("MONGODB_URL_FILE"):
        return _secret_file("MONGODB_URL_FILE").decode().strip()
    return os.environ.get("MONGODB_URL", "mongodb://localhost:27017/?directConnection=true")


def _databases() -> list[str]:
    named = os.environ.get("BACKUP_DATABASES", "")
    return [name.strip() for name in named.split(",") if name.strip()] or list(DATABASES)


async def dump_to(folder: Path) -> Path:
    """One backup file in ``folder`` (mode 0600; written under a temporary name, then renamed)."""
    client: AsyncMongoClient[Any] = AsyncMongoClient(_mongodb_url(), tz_aware=True)
    target = folder / backup_name(datetime.now(UTC))
    partial = target.with_suffix(".partial")
    try:
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            manifest = await dump(client, _databases(), file, _secret_file("BACKUP_KEY_FILE"))
            file.flush()
            os.fsync(file.fileno())
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
        await client.close()
    print(f"wrote {target}: {json.dumps(manifest.counts)}", flush=True)
    return target


async def restore_from(path: Path) -> None:
    client: AsyncMongoClient[Any] = AsyncMongoClient(_mongodb_url(), tz_aware=True)
    try:
        with path.open("rb") as file:
            manifest = await restore(client, file, _secret_file("BACKUP_KEY_FILE"))
    finally:
        await client.close()
    print(f"restored the backup taken at {manifest.taken_at}: {json.dumps(manifest.counts)}", flush=True)


async def schedule(folder: Path, at: str, keep_days: int) -> None:
    """Every day at ``at`` (HH:MM, UTC): a backup, then the ones older than ``keep_days`` removed. A failed backup
    is logged and tried again at the next run; the job keeps running."""
    hour, minute = (int(part) for part in at.split(":"))
    while True:
        now = datetime.now(UTC)
        next_run = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
        next_run += timedelta(days=1) if next_run <= now else timedelta()
        print(f"next backup at {next_run.isoformat()}", flush=True)
        await asyncio.sleep((next_run - now).total_seconds())
        try:
            await dump_to(folder)
        except Exception as error:  # a night's failure must not stop the next nights
            print(f"ERROR backup failed ({type(error).__name__}); the next run is tomorrow", file=sys.stderr)
        for removed in prune(folder, keep_days, datetime.now(UTC)):
            print(f"removed {removed} (older than {keep_days} days)", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.deploy.backup", description=(__doc__ or "").split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("dump").add_argument("--dir", type=Path, required=True)
    commands.add_parser("restore").add_argument("file", type=Path)
    for name in ("schedule", "prune"):
        command = commands.add_parser(name)
        command.add_argument("--dir", type=Path, required=True)
        command.add_argument("--keep-days", type=int, default=35)
    commands.choices["schedule"].add_argument("--at", default="02:30", help="HH:MM, UTC")
    args = parser.parse_args(argv)
    if args.command == "dump":
        asyncio.run(dump_to(args.dir))
    elif args.command == "restore":
        asyncio.run(restore_from(args.file))
    elif args.command == "schedule":
        asyncio.run(schedule(args.dir, args.at, args.keep_days))
    else:
        for removed in prune(args.dir, args.keep_days, datetime.now(UTC)):
            print(f"removed {removed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
