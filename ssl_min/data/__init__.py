"""Data: audio files -> tracks -> positive pairs for pretraining; labeled layouts for the probe.

    audio.py    one file as the model sees it (mono, the model's rate), read only where needed
    index.py    a collection checked once: bad files counted and named, the index cached
    cache.py    the decode-once cache (a memmapped file per track) and its CachedTracks
    decode.py   decoding in processes that may fail: bad audio, a full disk and a dead worker told apart
    locks.py    two processes on one cache: builds take turns, no file deleted under a reader
    source.py   the one data path: a folder or a cache -> tracks (open_tracks)
    pairs.py    the endless, seeded stream of positive pairs (two chunks of one track)
    labeled.py  labeled layouts (DL101 tutorial, MagnaTagATune, class folders, CSV) and their splits
    demo.py     the built-in demo dataset, synthesised with honest labels
"""
from ssl_min.data.audio import AUDIO_EXTENSIONS, Track, find_audio, split_chunks, track_chunks
from ssl_min.data.labeled import LabeledSet, load_labeled
from ssl_min.data.pairs import PairDataset, StreamSampler
from ssl_min.data.index import ScanReport, scan, scan_folder
from ssl_min.data.source import open_tracks

__all__ = ["AUDIO_EXTENSIONS", "Track", "find_audio", "split_chunks", "track_chunks", "LabeledSet", "load_labeled",
           "PairDataset", "StreamSampler", "ScanReport", "scan", "scan_folder", "open_tracks"]
