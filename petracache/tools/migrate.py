"""``petracache migrate --from HOST:PORT --to HOST:PORT``: copy a live cache over the protocol.

Works between any two servers of memcached 1.6's text and meta protocols (memcached to
petracache when moving in, petracache to petracache when resharding with ``--prefix``).

Strategy:

1. Both ends must answer ``version`` with ``VERSION``: anything else is the wrong port.
2. The source's ``lru_crawler metadump all`` is read to its ``END`` at once and spooled to a
   temporary file (key and expiry per line; only keys under ``--prefix``). Reading it as
   fast as it comes keeps the source's crawler from waiting on us, the spool keeps memory
   bounded whatever the key count, and its line count is the progress bar's total.
3. ``--concurrency`` workers, each with its own source and target connections, take batches
   of keys. For a batch a worker pipelines ``mg <key> v f t`` to the source; for each hit
   it writes ``ms <key> <len> F<flags> T<ttl> ME`` (add: never overwrite a key the target
   already has, since clients may be writing there) or, with ``--overwrite``, a plain set;
   then it reads the target's replies. Base64 keys (``b``) are used for keys that are not
   safe as text. Memory per worker is one value plus one batch of keys.
4. TTLs: ``t`` is the remaining time. It is sent as is (relative) when at most 30 days, and
   as an absolute Unix time beyond that, since memcached reads an exptime over 30 days as
   absolute. ``t-1`` (never expires) is sent as ``T0``.

Outcomes per key: copied (``HD``); skipped because it expired (a miss on the source while
its dumped expiry has passed), vanished (any other miss: deleted or evicted since the dump)
or was present on the target (``NS``); failed (any error reply, or its worker's connection
broke). The summary line says all of them; the exit status is 1 when anything failed.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, NoReturn
from urllib.parse import unquote_to_bytes

import trio
from tqdm import tqdm

from petracache.rules.ttl import REALTIME_MAXDELTA
from petracache.tools.wire import Wire, WireError

DEFAULT_CONCURRENCY = 4
DEFAULT_BATCH = 100
DEFAULT_TIMEOUT = 10.0
MAX_ERRORS_SHOWN = 5
EXIT_FAILED = 1
EXIT_USAGE = 2

Record = tuple[bytes, int]  # (raw key, dumped expiry: -1 or absolute Unix time)


@dataclass(frozen=True, slots=True)
class Options:
    """The command line's choices (``build_parser`` documents each)."""

    source: str
    target: str
    overwrite: bool = False
    prefix: bytes = b""
    concurrency: int = DEFAULT_CONCURRENCY
    batch: int = DEFAULT_BATCH
    timeout: float = DEFAULT_TIMEOUT


@dataclass(slots=True)
class Tally:
    """What happened to each dumped key."""

    copied: int = 0
    expired: int = 0
    vanished: int = 0
    present: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def fail(self, count: int, reason: str) -> None:
        """Count ``count`` keys failed; keep the first ``MAX_ERRORS_SHOWN`` reasons."""
        self.failed += count
        if len(self.errors) < MAX_ERRORS_SHOWN:
            self.errors.append(reason)

    def merge(self, other: Tally) -> None:
        """Add a worker's tally to this one."""
        self.copied += other.copied
        self.expired += other.expired
        self.vanished += other.vanished
        self.present += other.present
        self.failed += other.failed
        self.errors.extend(other.errors[: MAX_ERRORS_SHOWN - len(self.errors)])

    @property
    def done(self) -> int:
        """Keys dealt with, whatever the outcome."""
        return self.copied + self.expired + self.vanished + self.present + self.failed

    def summary(self) -> str:
        """The closing line: every outcome's count."""
        skipped = self.expired + self.vanished + self.present
        return (
            f"copied {self.copied}, skipped {skipped} (expired {self.expired}, "
            f"vanished {self.vanished}, present {self.present}), failed {self.failed}"
        )


# -- wire formats (pure) -------------------------------------------------------------------


def _unsafe(key: bytes) -> bool:
    return any(c <= 32 or c >= 127 for c in key)


def key_token(key: bytes) -> tuple[bytes, bytes]:
    """(the key as sent, b" b" when it is base64-encoded)."""
    if _unsafe(key):
        return base64.b64encode(key), b" b"
    return key, b""


def parse_dump_line(line: bytes) -> Record:
    """``key=<uriencoded> exp=<n> ...`` -> (raw key, exp).

    Raises:
        ValueError: not a metadump line.
    """
    fields = dict(part.split(b"=", 1) for part in line.split(b" ") if b"=" in part)
    return unquote_to_bytes(fields[b"key"]), int(fields[b"exp"])


def mg_command(key: bytes) -> bytes:
    """The source's request for ``key``: its value, client flags and remaining TTL."""
    token, b = key_token(key)
    return b"mg %b v f t%b\r\n" % (token, b)


def target_ttl(remaining: int, now: int) -> int | None:
    """The ``T`` to send for ``t<remaining>``; None when the item is already dead."""
    if remaining < 0:
        return 0
    if remaining == 0:
        return None
    if remaining > REALTIME_MAXDELTA:
        return now + remaining  # memcached would read the relative number as absolute
    return remaining


def ms_command(key: bytes, data: bytes, flags: int, ttl: int, overwrite: bool) -> bytes:
    """The target's request storing the item: an add (``ME``) unless ``overwrite``."""
    token, b = key_token(key)
    mode = b"" if overwrite else b" ME"
    return b"ms %b %d F%d T%d%b%b\r\n%b\r\n" % (token, len(data), flags, ttl, mode, b, data)


def parse_va(header: bytes) -> tuple[int, int, int]:
    """``VA <size> f<flags> t<ttl>`` -> (size, flags, remaining).

    Raises:
        ValueError: not a VA line.
    """
    tokens = header.split()
    if tokens[0] != b"VA":
        raise ValueError(header)
    size = int(tokens[1])
    flags, remaining = 0, -1
    for token in tokens[2:]:
        if token[:1] == b"f":
            flags = int(token[1:])
        elif token[:1] == b"t":
            remaining = int(token[1:])
    return size, flags, remaining


# -- the copy ------------------------------------------------------------------------------


async def probe(addr: str, wait: float) -> Wire:
    """Connect and check the peer answers ``version`` as memcached does.

    Raises:
        WireError: unreachable, or not a memcached-protocol server.
    """
    wire = await Wire.connect(addr, wait)
    try:
        await wire.send(b"version\r\n")
        reply = await wire.readline()
    except WireError as exc:
        await wire.aclose()
        raise WireError(f"{exc} (is it a memcached server?)") from None
    if not reply.startswith(b"VERSION "):
        await wire.aclose()
        shown = reply[:60].decode("ascii", "replace")
        raise WireError(f"{addr}: not a memcached server (it answered {shown!r} to version)")
    return wire


async def spool_dump(source: Wire, prefix: bytes, spool: IO[bytes]) -> int:
    """Read the whole metadump into ``spool`` (keys under ``prefix``); returns the count.

    Raises:
        WireError: the source refused metadump or the dump broke off.
    """
    await source.send(b"lru_crawler metadump all\r\n")
    count = 0
    while True:
        line = await source.readline()
        if line == b"END":
            return count
        if not line.startswith(b"key="):
            shown = line[:80].decode("ascii", "replace")
            raise WireError(f"{source.addr}: lru_crawler metadump failed: {shown}")
        key, exp = parse_dump_line(line)
        if key.startswith(prefix):
            spool.write(b"%b %d\n" % (base64.b64encode(key), exp))
            count += 1


def read_batches(spool: IO[bytes], size: int) -> list[list[Record]]:
    """The next batches from the spool (a few at a time keeps memory bounded)."""
    batches: list[list[Record]] = []
    batch: list[Record] = []
    for _ in range(size * 8):
        line = spool.readline()
        if not line:
            break
        key, exp = line.split()
        batch.append((base64.b64decode(key), int(exp)))
        if len(batch) == size:
            batches.append(batch)
            batch = []
    if batch:
        batches.append(batch)
    return batches


async def _fetch_and_store(
    source: Wire, target: Wire, batch: list[Record], opts: Options, tally: Tally
) -> list[bytes]:
    """Pipeline the batch's ``mg``s; send an ``ms`` per hit; returns the keys sent."""
    await source.send(b"".join(mg_command(key) for key, _exp in batch))
    sent: list[bytes] = []
    for key, exp in batch:
        header = await source.readline()
        now = int(time.time())
        if header == b"EN":
            if exp != -1 and exp <= now:
                tally.expired += 1
            else:
                tally.vanished += 1
            continue
        try:
            size, flags, remaining = parse_va(header)
        except (ValueError, IndexError):
            if header.startswith((b"CLIENT_ERROR", b"SERVER_ERROR")):
                tally.fail(1, f"{source.addr}: mg {key!r}: {header.decode('ascii', 'replace')}")
                continue
            raise WireError(f"{source.addr}: unexpected reply to mg: {header[:80]!r}") from None
        data = (await source.read_exact(size + 2))[:-2]
        ttl = target_ttl(remaining, now)
        if ttl is None:
            tally.expired += 1
            continue
        await target.send(ms_command(key, data, flags, ttl, opts.overwrite))
        sent.append(key)
    return sent


async def copy_batch(
    source: Wire, target: Wire, batch: list[Record], opts: Options, tally: Tally
) -> None:
    """Copy one batch; every key ends up in exactly one of the tally's outcomes.

    Raises:
        WireError: a connection broke or went out of step (the caller counts the rest).
    """
    sent = await _fetch_and_store(source, target, batch, opts, tally)
    for key in sent:
        reply = await target.readline()
        if reply == b"HD":
            tally.copied += 1
        elif reply == b"NS":
            tally.present += 1
        else:
            tally.fail(1, f"{target.addr}: ms {key!r}: {reply[:80].decode('ascii', 'replace')}")


async def _worker(
    opts: Options,
    batches: trio.MemoryReceiveChannel[list[Record]],
    tally: Tally,
    progress: Callable[[int], object],
) -> None:
    """Copy batches until the channel closes; after a broken connection, count the rest failed."""
    source: Wire | None = None
    target: Wire | None = None
    try:
        source = await Wire.connect(opts.source, opts.timeout)
        target = await Wire.connect(opts.target, opts.timeout)
    except WireError as exc:
        tally.fail(0, str(exc))
    async with batches:
        async for batch in batches:
            local = Tally()  # this batch's outcomes (other workers update ``tally`` meanwhile)
            if source is not None and target is not None:
                try:
                    await copy_batch(source, target, batch, opts, local)
                except WireError as exc:
                    source = target = None  # out of step: the rest of the keys fail
                    local.fail(0, str(exc))
            missing = len(batch) - local.done
            if missing:
                local.fail(missing, "connection lost")
            tally.merge(local)
            progress(len(batch))
    for wire in (source, target):
        if wire is not None:
            await wire.aclose()


async def migrate(opts: Options, progress_bar: bool) -> Tally:
    """Run the whole migration (see the module docstring).

    Raises:
        WireError: either end is unreachable or not a memcached server, or the dump failed.
    """
    source = await probe(opts.source, opts.timeout)
    target = await probe(opts.target, opts.timeout)
    await target.aclose()
    tally = Tally()
    with tempfile.TemporaryFile() as spool:
        try:
            total = await spool_dump(source, opts.prefix, spool)
        finally:
            await source.aclose()
        spool.seek(0)
        bar = tqdm(total=total, unit="item", disable=not progress_bar, file=sys.stderr)
        with bar:
            send, receive = trio.open_memory_channel[list[Record]](opts.concurrency)
            async with trio.open_nursery() as nursery:
                for _ in range(opts.concurrency):
                    nursery.start_soon(_worker, opts, receive.clone(), tally, bar.update)
                await receive.aclose()
                async with send:
                    while chunk := read_batches(spool, opts.batch):
                        for batch in chunk:
                            await send.send(batch)
    return tally


# -- command line --------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """``petracache migrate``'s command line."""
    parser = _Parser(
        prog="petracache migrate",
        description="Copy every live item from one memcached-protocol server to another.",
    )
    parser.add_argument("--from", dest="source", required=True, metavar="HOST:PORT")
    parser.add_argument("--to", dest="target", required=True, metavar="HOST:PORT")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace keys the target already has"
    )
    parser.add_argument("--prefix", default="", help="copy only keys starting with this")
    parser.add_argument(
        "--concurrency", type=_positive, default=DEFAULT_CONCURRENCY, help="parallel workers"
    )
    parser.add_argument(
        "--batch", type=_positive, default=DEFAULT_BATCH, help="keys pipelined per round trip"
    )
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds to wait for a reply"
    )
    return parser


def main(argv: Sequence[str]) -> int:
    """``petracache migrate ...``: prints the summary line; exit 1 if anything failed."""
    args = build_parser().parse_args(argv)
    opts = Options(
        args.source,
        args.target,
        args.overwrite,
        args.prefix.encode(),
        args.concurrency,
        args.batch,
        args.timeout,
    )
    try:
        tally = trio.run(migrate, opts, sys.stderr.isatty())
    except WireError as exc:
        print(f"petracache migrate: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for error in tally.errors:
        print(f"petracache migrate: {error}", file=sys.stderr)
    print(tally.summary())
    with contextlib.suppress(BrokenPipeError):
        sys.stdout.flush()
    return EXIT_FAILED if tally.failed else 0
