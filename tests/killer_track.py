"""A track whose decoding kills its own process when it runs in a worker (as the OOM killer would):
importable by name, so a spawned decode worker can unpickle it (tests/test_faults.py)."""
import multiprocessing
import os
import signal

from ssl_min.data.audio import Track


class KillerTrack(Track):
    def read(self, start, n):
        if multiprocessing.parent_process() is not None:          # a worker, never the test's own process
            os.kill(os.getpid(), signal.SIGKILL)
        return super().read(start, n)
