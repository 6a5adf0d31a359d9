"""Evaluation: what a frozen encoder's features are worth, and getting them out.

    extract.py       decode each labeled track once, run every extractor on its chunks; the cache
    blocks.py        the layer-wise readout: mean and std over time of every block
    mfcc.py          the hand-crafted baseline: MFCC statistics
    linear_probe.py  the head: standardised features, logistic regression solved exactly, L2 on valid
    knn.py           weighted k-nearest neighbours on embeddings
    monitor.py       the kNN monitor train.py runs every --monitor_every steps
    export.py        a folder of audio -> one .npy per file (`python -m ssl_min.embed`)
"""
from ssl_min.evaluate.blocks import BlockStats
from ssl_min.evaluate.knn import knn_scores
from ssl_min.evaluate.extract import cached_extract, chunk_batches, extract, recalibrate_batchnorm
from ssl_min.evaluate.linear_probe import fit_logistic, metrics, select_head, standardise, track_scores
from ssl_min.evaluate.mfcc import MFCCStats

__all__ = ["BlockStats", "cached_extract", "chunk_batches", "extract", "recalibrate_batchnorm", "fit_logistic",
           "metrics", "select_head", "standardise", "track_scores", "MFCCStats", "knn_scores"]
