"""The FUSE operations: a passthrough to the live tree that reports to ``model`` and fails
on command.

Every operation runs under one lock (the control thread's commands too), so the model and
the live tree change together. Files are opened read-write underneath whatever the caller
asked for, so a file's fsync can read back the pages it makes durable.

Faults (``Rule``): the next ``times`` operations of one kind (``write``: write, truncate,
fallocate; ``fsync``: fsync, fdatasync, a directory's fsync; ``create``: create, mkdir,
rename, link) on a path matching a glob (``*.log``, ``*/MANIFEST-*``, ``*/backups/*``)
fail with the rule's errno; ``times = None`` fails them until the rules are cleared (a
disk that stays full). A failed write writes nothing; a failed file fsync forgets the
pages it should have written (``Model.drop``), as Linux does.
"""

from __future__ import annotations

import errno
import fnmatch
import functools
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import mfusepy

from tests.faultfs.model import Model

FALLOC_FL_KEEP_SIZE = 0x01
KINDS = ("write", "fsync", "create", "any")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Rule:
    """Fail the next ``times`` (None: every) ``kind`` operations on paths matching ``glob``."""

    glob: str
    kind: str
    errno: int
    times: int | None = 1
    hits: int = 0


def _locked(method: F) -> F:
    @functools.wraps(method)
    def run(self: FaultOps, *args: Any) -> Any:
        with self.mutex:
            return method(self, *args)

    return run  # type: ignore[return-value]


def _attrs(st: os.stat_result) -> dict[str, int]:
    return {
        "st_mode": st.st_mode,
        "st_ino": st.st_ino,
        "st_nlink": st.st_nlink,
        "st_size": st.st_size,
        "st_uid": st.st_uid,
        "st_gid": st.st_gid,
        "st_blocks": st.st_blocks,
        "st_atime": st.st_atime_ns,
        "st_mtime": st.st_mtime_ns,
        "st_ctime": st.st_ctime_ns,
    }


class FaultFUSE(mfusepy.FUSE):  # type: ignore[misc]
    """mfusepy's ``FUSE`` passing on the file handle of an ``ftruncate`` (it drops it)."""

    def truncate_fuse_3(self, path: bytes | None, length: int, fip: Any) -> int:
        fh = fip.contents.fh if fip else None
        name = None if path is None else path.decode(self.encoding, self.errors)
        result: int = self.operations.truncate(name, length, fh)
        return result


class FaultOps(mfusepy.Operations):  # type: ignore[misc]
    """mfusepy operations over ``live`` (see the module docstring)."""

    use_ns = True

    def __init__(self, live: str, store: str) -> None:
        self.live = live
        self.model = Model(live, store)
        self.mutex = threading.Lock()
        self.dirs: dict[int, str] = {}  # directory handle -> path at opendir
        self._next_dir = 1
        self.rules: list[Rule] = []
        self.handles: dict[int, tuple[int, str]] = {}  # fd -> (identity, path at open)
        self.counts = dict.fromkeys(("writes", "fsyncs", "dir_fsyncs", "injected"), 0)

    def _real(self, path: str) -> str:
        return self.live + path

    def _fault(self, kind: str, path: str) -> None:
        for rule in self.rules:
            if rule.kind in (kind, "any") and fnmatch.fnmatchcase(path, rule.glob):
                rule.hits += 1
                self.counts["injected"] += 1
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times <= 0:
                        self.rules.remove(rule)
                raise mfusepy.FuseOSError(rule.errno)

    def init_with_config(self, conn: Any, config: Any) -> None:
        # No kernel caching of data, attributes or names: after a crash the live tree
        # changes under the kernel, and every read must see it.
        config.direct_io = 1
        config.attr_timeout = 0
        config.entry_timeout = 0
        config.negative_timeout = 0
        config.hard_remove = 1  # unlink at once, not a rename to .fuse_hidden
        config.use_ino = 1
        config.nullpath_ok = 1

    # -- names -----------------------------------------------------------------------------

    @_locked
    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, int]:
        st = os.fstat(fh) if fh is not None else os.lstat(self._real(path or "/"))
        return _attrs(st)

    @_locked
    def opendir(self, path: str) -> int:
        os.listdir(self._real(path))  # ENOENT, ENOTDIR
        handle, self._next_dir = self._next_dir, self._next_dir + 1
        self.dirs[handle] = path
        return handle

    @_locked
    def releasedir(self, path: str | None, fh: int) -> int:
        self.dirs.pop(fh, None)
        return 0

    @_locked
    def readdir(self, path: str | None, fh: int) -> list[tuple[str, dict[str, int], int]]:
        # With use_ino, an entry without its inode number would read as ino 0, which the
        # kernel skips: give each entry its mode and inode.
        real = self._real(path or self.dirs[fh])
        out = [(name, _attrs(os.lstat(real)), 0) for name in (".", "..")]
        with os.scandir(real) as it:
            out += [(e.name, _attrs(e.stat(follow_symlinks=False)), 0) for e in it]
        return out

    @_locked
    def access(self, path: str, amode: int) -> int:
        os.lstat(self._real(path))
        return 0

    @_locked
    def mkdir(self, path: str, mode: int) -> int:
        self._fault("create", path)
        os.mkdir(self._real(path), mode)
        self.model.created(os.lstat(self._real(path)))
        return 0

    @_locked
    def rmdir(self, path: str) -> int:
        os.rmdir(self._real(path))
        return 0

    @_locked
    def unlink(self, path: str) -> int:
        os.unlink(self._real(path))
        return 0

    @_locked
    def rename(self, old: str, new: str) -> int:
        self._fault("create", new)
        os.rename(self._real(old), self._real(new))
        return 0

    @_locked
    def link(self, target: str, source: str) -> int:
        self._fault("create", target)
        os.link(self._real(source), self._real(target))
        return 0

    @_locked
    def chmod(self, path: str | None, mode: int) -> int:
        if path is not None:  # else an open, unlinked file: modes are not modelled
            os.chmod(self._real(path), mode)
        return 0

    @_locked
    def chown(self, path: str | None, uid: int, gid: int) -> int:
        if path is not None:
            os.chown(self._real(path), uid, gid)
        return 0

    @_locked
    def utimens(self, path: str | None, times: tuple[int, int] | None = None) -> int:
        if path is not None and times is not None:
            os.utime(self._real(path), ns=times)
        elif path is not None:
            os.utime(self._real(path))
        return 0

    @_locked
    def statfs(self, path: str) -> dict[str, int]:
        st = os.statvfs(self.live)
        names = ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files")
        return {name: getattr(st, name) for name in (*names, "f_ffree", "f_favail", "f_namemax")}

    @_locked
    def fsyncdir(self, path: str | None, datasync: int, fh: int) -> int:
        path = path or self.dirs[fh]
        self._fault("fsync", path)
        self.counts["dir_fsyncs"] += 1
        self.model.sync_dir(self._real(path))
        return 0

    # -- files -----------------------------------------------------------------------------

    def _opened(self, fd: int, path: str, ident: int) -> int:
        self.handles[fd] = (ident, path)
        return fd

    @_locked
    def create(self, path: str, mode: int, flags: int = 0) -> int:
        self._fault("create", path)
        real = self._real(path)
        existed = os.path.lexists(real)
        fd = os.open(real, os.O_RDWR | os.O_CREAT | (flags & (os.O_EXCL | os.O_TRUNC)), mode)
        st = os.fstat(fd)
        ident = self.model.identity(st) if existed else self.model.created(st)
        if existed and flags & os.O_TRUNC:
            self.model.truncated(ident, 0)
        return self._opened(fd, path, ident)

    @_locked
    def open(self, path: str, flags: int) -> int:
        if flags & os.O_TRUNC:
            self._fault("write", path)
        fd = os.open(self._real(path), os.O_RDWR | (flags & os.O_TRUNC))
        ident = self.model.identity(os.fstat(fd))
        if flags & os.O_TRUNC:
            self.model.truncated(ident, 0)
        return self._opened(fd, path, ident)

    @_locked
    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        return os.pread(fh, size, offset)

    @_locked
    def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
        ident, opened = self.handles[fh]
        self._fault("write", path or opened)
        written = os.pwrite(fh, data, offset)
        self.model.wrote(ident, offset, written)
        self.counts["writes"] += 1
        return written

    @_locked
    def truncate(self, path: str | None, length: int, fh: int | None = None) -> int:
        if fh is not None:
            ident, opened = self.handles[fh]
            self._fault("write", path or opened)
            os.ftruncate(fh, length)
        else:
            assert path is not None
            self._fault("write", path)
            os.truncate(self._real(path), length)
            ident = self.model.identity(os.lstat(self._real(path)))
        self.model.truncated(ident, length)
        return 0

    @_locked
    def fallocate(self, path: str | None, mode: int, offset: int, size: int, fh: int) -> int:
        if mode & FALLOC_FL_KEEP_SIZE:
            return 0  # preallocation only: nothing a reader or a power cut can tell
        if mode:
            raise mfusepy.FuseOSError(errno.EOPNOTSUPP)
        self._fault("write", path or self.handles[fh][1])
        os.posix_fallocate(fh, offset, size)
        return 0

    @_locked
    def flush(self, path: str | None, fh: int) -> int:
        return 0

    @_locked
    def release(self, path: str | None, fh: int) -> int:
        self.handles.pop(fh, None)
        os.close(fh)
        return 0

    @_locked
    def fsync(self, path: str | None, datasync: int, fh: int) -> int:
        ident, opened = self.handles[fh]
        self.counts["fsyncs"] += 1
        try:
            self._fault("fsync", path or opened)
        except OSError:
            self.model.drop(ident)
            raise
        self.model.sync_file(ident, fh)
        return 0

    # -- commands (the control thread) -----------------------------------------------------

    def command(self, request: dict[str, Any]) -> dict[str, Any]:
        """Run one control command (``tests.faultfs.control``) under the lock."""
        op = request.get("op")
        with self.mutex:
            if op == "fail":
                kind = request.get("kind", "any")
                if kind not in KINDS:
                    raise ValueError(f"kind must be one of {KINDS}")
                code = getattr(errno, request.get("errno", "EIO"))
                self.rules.append(Rule(request["glob"], kind, code, request.get("times", 1)))
                return {}
            if op == "clear":
                self.rules.clear()
                return {}
            if op == "stats":
                return {
                    **self.counts,
                    "unsynced_pages": self.model.unsynced(),
                    "open_files": len(self.handles),
                    "rules": len(self.rules),
                }
            if op == "crash":
                if self.handles:
                    raise RuntimeError(f"{len(self.handles)} files still open: stop their users")
                return self.model.crash()
        raise ValueError(f"unknown command {op!r}")
