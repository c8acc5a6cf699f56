"""What a power cut keeps: the durable state of a directory tree, kept beside the live one.

Strategy (LazyFS's idea, with names as volatile as data): every operation is applied at
once to the *live* tree, a real directory, so reads see everything as on any file system.
This model tracks what a power cut would keep, the *durable* state, and only two calls
move it: ``sync_file`` (fsync or fdatasync of a file) and ``sync_dir`` (fsync of a
directory). ``crash`` rebuilds the live tree from the durable state: everything not made
durable is lost.

* A file is an *identity* (a number of ours, kept per live inode, so a rename or a hard
  link keeps it). Its durable content is a file of its own in the store directory; a
  file's fsync copies the pages written since its last fsync (and its size, and a
  truncation) there.
* A directory's durable entries (name -> identity) change only when that directory is
  fsynced: they become its live entries. So a created, renamed or unlinked name survives a
  power cut only once its directory is fsynced, as POSIX promises and no more (ext4 often
  keeps more; a program that relies on that is wrong on another file system).
* A failed fsync forgets the pages it should have written (``drop``): Linux marks them clean
  after a write-back error, so a later fsync that succeeds does not write them
  (PostgreSQL's "fsyncgate").

Not modelled: torn or partial writes inside the lost part (a power cut here keeps exactly
what was synced, nothing more), file modes and times (rebuilt files are 0644), symlinks.
"""

from __future__ import annotations

import os
import shutil
import stat

PAGE = 4096  # what a write dirties: whole pages, as the page cache does
FILE, DIR = "f", "d"


class Model:
    """The durable state of the tree at ``live`` (see the module docstring).

    Args:
        live: the real directory the file system shows (its contents at start are taken
            as durable).
        store: an empty directory for the durable contents of files.
    """

    def __init__(self, live: str, store: str) -> None:
        self.live = live
        self.store = store
        self._next = 0
        self.ids: dict[int, int] = {}  # live inode -> identity
        self.kind: dict[int, str] = {}  # identity -> FILE or DIR
        self.entries: dict[int, dict[str, int]] = {}  # a directory's durable entries
        self.dirty: dict[int, set[int]] = {}  # identity -> pages written since its fsync
        self.cut: dict[int, int] = {}  # identity -> smallest size truncated to since then
        self.root = self._adopt(live)

    # -- identities ------------------------------------------------------------------------

    def _new(self, st: os.stat_result) -> int:
        ident = self._next
        self._next += 1
        self.ids[st.st_ino] = ident
        if stat.S_ISDIR(st.st_mode):
            self.kind[ident] = DIR
            self.entries[ident] = {}
        else:
            self.kind[ident] = FILE
            open(self._stored(ident), "wb").close()  # nothing of it is durable yet
        return ident

    def _stored(self, ident: int) -> str:
        return os.path.join(self.store, str(ident))

    def identity(self, st: os.stat_result) -> int:
        """The identity of the live inode ``st`` describes."""
        ident = self.ids.get(st.st_ino)
        return self._new(st) if ident is None else ident

    def created(self, st: os.stat_result) -> int:
        """A new live inode (create, mkdir): a fresh identity, even if the inode number was
        used before."""
        return self._new(st)

    def _adopt(self, path: str) -> int:
        """Take the tree at ``path`` as durable, as it is."""
        ident = self._new(os.lstat(path))
        if self.kind[ident] == FILE:
            shutil.copyfile(path, self._stored(ident))
            return ident
        with os.scandir(path) as it:
            for entry in it:
                self.entries[ident][entry.name] = self._adopt(entry.path)
        return ident

    # -- what changes the durable state ------------------------------------------------------

    def wrote(self, ident: int, offset: int, length: int) -> None:
        if length > 0:
            pages = self.dirty.setdefault(ident, set())
            pages.update(range(offset // PAGE, (offset + length - 1) // PAGE + 1))

    def truncated(self, ident: int, size: int) -> None:
        self.cut[ident] = min(self.cut.get(ident, size), size)

    def sync_file(self, ident: int, fd: int) -> None:
        """fsync of the file open as ``fd``: its content and size become durable."""
        out = os.open(self._stored(ident), os.O_RDWR)
        try:
            if ident in self.cut:
                os.ftruncate(out, self.cut.pop(ident))
            for page in sorted(self.dirty.pop(ident, ())):
                data = os.pread(fd, PAGE, page * PAGE)
                if data:
                    os.pwrite(out, data, page * PAGE)
            os.ftruncate(out, os.fstat(fd).st_size)
        finally:
            os.close(out)

    def drop(self, ident: int) -> None:
        """A failed fsync: its pages are no longer dirty, and were not written."""
        self.dirty.pop(ident, None)
        self.cut.pop(ident, None)

    def sync_dir(self, path: str) -> None:
        """fsync of the live directory ``path``: its entries become durable."""
        entries = {}
        with os.scandir(path) as it:
            for entry in it:
                entries[entry.name] = self.identity(entry.stat(follow_symlinks=False))
        self.entries[self.identity(os.lstat(path))] = entries

    # -- the power cut -----------------------------------------------------------------------

    def unsynced(self) -> int:
        """Pages written and not yet made durable."""
        return sum(len(pages) for pages in self.dirty.values())

    def crash(self) -> dict[str, int]:
        """Lose everything not durable: the live tree becomes the durable one.

        Returns:
            ``lost_pages`` (written, never synced) and ``files``/``dirs`` (what remains).
        """
        lost = self.unsynced()
        with os.scandir(self.live) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
        self.ids = {os.lstat(self.live).st_ino: self.root}
        placed: dict[int, str] = {}
        dirs = {self.root}
        pending = [(self.root, self.live)]
        while pending:
            ident, path = pending.pop()
            for name, child in sorted(self.entries[ident].items()):
                target = os.path.join(path, name)
                if self.kind[child] == DIR:
                    if child in dirs:
                        continue  # a cycle through renamed directories: keep the first
                    dirs.add(child)
                    os.mkdir(target)
                    pending.append((child, target))
                elif child in placed:
                    os.link(placed[child], target)
                    continue
                else:
                    shutil.copyfile(self._stored(child), target)
                    placed[child] = target
                self.ids[os.lstat(target).st_ino] = child
        for ident in [i for i in self.kind if i not in placed and i not in dirs]:
            if self.kind.pop(ident) == FILE:
                os.unlink(self._stored(ident))
            self.entries.pop(ident, None)
        self.dirty.clear()
        self.cut.clear()
        return {"lost_pages": lost, "files": len(placed), "dirs": len(dirs)}
