"""Pictures and pages: what a run did, what the probe found, what the encoder hears as close.

    curves.py     metrics.jsonl of one or more runs -> RUN/curves.png (`python -m ssl_min.plot`)
    bars.py       a probe's JSON -> per-tag (or per-class) PR-AUC bars, one colour per row
    neighbors.py  a folder -> a static page of each track's nearest tracks, with players and a map
                  (`python -m ssl_min.neighbors`)
matplotlib draws without a display (the Agg backend); the page needs no server and no script library.
"""
