"""Training curves as a picture: one or more runs' metrics.jsonl, overlaid, against steps.

    plot_runs([RUN, ...], out) -> out (a PNG): loss, learning rate, clips/s, data wait and, where a
    run has them, its kNN monitor's readings (ssl_min/evaluate/monitor.py), each run in its own colour
"""
import json
from pathlib import Path

PANELS = [("loss", "loss"), ("lr", "learning rate"), ("clips_per_s", "clips / s"),
          ("data_wait", "data wait (share of step time)")]


def read_metrics(run):
    """RUN/metrics.jsonl -> {key: (steps, values)} for every numeric key of its rows."""
    path = Path(run) / "metrics.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no metrics.jsonl (is {run} a train.py run folder?)")
    series = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)):
                series.setdefault(key, ([], []))
                series[key][0].append(row["step"])
                series[key][1].append(value)
    return series


def plot_runs(runs, out):
    """-> out, a PNG of every run's curves (the runs named by their folders)."""
    import matplotlib
    matplotlib.use("Agg")                                   # no display needed
    import matplotlib.pyplot as plt
    data = {Path(r).name or str(r): read_metrics(r) for r in runs}
    monitors = sorted({k for s in data.values() for k in s if k.startswith("knn_")})
    panels = PANELS + [(k, f"monitor: {k}") for k in monitors]
    cols = 3
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.2 * rows), squeeze=False)
    for ax, (key, title) in zip(axes.flat, panels):
        for name, series in data.items():
            if key in series:
                ax.plot(*series[key], label=name, marker="o" if key.startswith("knn_") else None, markersize=3)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)
