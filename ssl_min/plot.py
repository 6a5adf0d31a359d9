"""`python -m ssl_min.plot RUN [RUN ...]`: training curves of one or more runs, overlaid, into
RUN/curves.png of the first run (or --out). The drawing: ssl_min/visual/curves.py."""
import argparse
from pathlib import Path

from ssl_min.visual.curves import plot_runs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("runs", nargs="+", help="train.py run folders (each with its metrics.jsonl)")
    ap.add_argument("--out", default=None, help="the PNG to write (default: FIRST_RUN/curves.png)")
    a = ap.parse_args(argv)
    out = plot_runs(a.runs, a.out or Path(a.runs[0]) / "curves.png")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
