"""Two processes on one cache: builds take turns, and no build deletes a file a reader may still open.

A cache is read lazily (a track's file is opened at its first chunk), so a second job that rebuilds
the cache while a training reads it must not delete the files of tracks that changed or went away:
the training would meet a missing file mid-run. Two advisory locks (flock) in the cache folder:

    build.lock     exclusive, for a whole build: two builders of one cache take turns
    readers.lock   shared, held by every process that reads the cache (from load_cache to its end);
                   a build deletes stale files only if it can take it exclusively, else keeps them
                   for a later build

flock locks belong to the open file, so they go when the process ends, however it ends (a kill -9
leaves no stale lock). Without fcntl (Windows) there are no locks: one process per cache there.

    with build_lock(cache_dir, say): ...      hold_for_reading(cache_dir)
    delete_unread(cache_dir, files) -> deleted?     with stop_on_sigterm(): ...
"""
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:
    fcntl = None

_reading = {}                     # cache folder -> the open lock file this process reads it under


@contextmanager
def build_lock(cache_dir, say=print):
    """One build of a cache at a time: waits (and says so) while another process builds it."""
    if fcntl is None:
        yield
        return
    with open(Path(cache_dir) / "build.lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"decode-once cache {cache_dir}: another process is building it; waiting for it")
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def hold_for_reading(cache_dir):
    """Take, once per process, the shared lock that says this process reads the cache's files."""
    key = str(Path(cache_dir).resolve())
    if fcntl is not None and key not in _reading:
        f = open(Path(cache_dir) / "readers.lock", "a")
        fcntl.flock(f, fcntl.LOCK_SH)
        _reading[key] = f


def delete_unread(cache_dir, files) -> bool:
    """Delete `files` unless another process reads the cache (then keep them) -> were they deleted?"""
    if not files:
        return True
    if fcntl is None:
        for p in files:
            Path(p).unlink(missing_ok=True)
        return True
    own = _reading.get(str(Path(cache_dir).resolve()))
    f = own or open(Path(cache_dir) / "readers.lock", "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)   # this process's own shared lock is converted
    except BlockingIOError:
        if not own:
            f.close()
        return False
    for p in files:
        Path(p).unlink(missing_ok=True)
    if own:
        fcntl.flock(f, fcntl.LOCK_SH)                    # back to reading
    else:
        f.close()
    return True


@contextmanager
def stop_on_sigterm():
    """SIGTERM (a scheduler, `docker stop`) raises SystemExit while the block runs, as Ctrl-C raises
    KeyboardInterrupt, so the temporary file being written is removed on the way out. Only where no
    handler is set already (train.py's stop request keeps its own) and in the main thread."""
    mine = (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)
    if mine:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        yield
    finally:
        if mine:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
