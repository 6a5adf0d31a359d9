"""`python -m ssl_min.neighbors --checkpoint C --data FOLDER --out DIR`: DIR/index.html, each track's
nearest tracks with players, and a map (the page: ssl_min/visual/neighbors.py)."""
import argparse

from ssl_min.models.load import pick_device
from ssl_min.visual.neighbors import build_page


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--checkpoint", required=True, help="a train.py checkpoint, or CLMR's")
    ap.add_argument("--data", required=True, help="a folder of audio, or a labeled layout (e.g. data/demo/style)")
    ap.add_argument("--out", required=True, help="the page's folder (index.html, audio/)")
    ap.add_argument("--k", type=int, default=5, help="neighbours per query")
    ap.add_argument("--queries", type=int, default=60, help="queries: every track, or a seeded sample of this many")
    ap.add_argument("--seconds", type=float, default=8.0, help="length of each audio excerpt")
    ap.add_argument("--seed", type=int, default=0, help="which tracks are sampled as queries")
    ap.add_argument("--conv", choices=["auto", "reference", "fast"], default="auto", help="the encoder's formulation")
    ap.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda'")
    ap.add_argument("--colour", default=None, help="a tagged layout: the tag that colours the map (default: the "
                    "most frequent)")
    a = ap.parse_args(argv)
    build_page(a.checkpoint, a.data, a.out, a.k, a.queries, a.seconds, a.seed, a.conv, pick_device(a.device),
               colour=a.colour)


if __name__ == "__main__":
    main()
