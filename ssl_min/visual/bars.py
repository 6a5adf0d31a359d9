"""A probe's result as a picture: each tag's (or class's) test PR-AUC, one bar per row.

    plot_probe(report, out) -> out (a PNG); report: the dict probe.py writes as JSON
"""
from pathlib import Path


def plot_probe(report, out):
    import matplotlib
    matplotlib.use("Agg")                                   # no display needed
    import matplotlib.pyplot as plt
    rows = list(report["results"])
    names = [n for n in report["names"] if any(n in report["results"][r]["per_tag"] for r in rows)]
    width = 0.8 / max(1, len(rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(names) * max(1, len(rows)) / 2 + 2), 3.6))
    for i, row in enumerate(rows):
        per = report["results"][row]["per_tag"]
        values = [per[n]["pr_auc"] if n in per else 0.0 for n in names]
        macro = report["results"][row]["pr_auc"]
        ax.bar([j + (i - (len(rows) - 1) / 2) * width for j in range(len(names))], values, width,
               label=f"{row} (macro {macro:.3f})")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_ylim(0, 1.18)                                    # room for the legend above the bars
    ax.set_ylabel("test PR-AUC")
    ax.set_title(f"{report['task']} probe of {Path(report['checkpoint']).name} on {report['data']}")
    ax.legend(fontsize=8, loc="upper center", ncol=len(rows), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)
