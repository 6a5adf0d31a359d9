"""A page of nearest neighbours you can listen to: does the encoder hear as close what sounds close?

    build_page(checkpoint, data, out, k=5, queries=60) -> stats; writes out/index.html + out/audio/*.wav

* tracks: a labeled layout (anything probe.py reads: a track's class is its colour when the task is
  multi-class; when it is tagged, each track shows its tags and the map is coloured by one tag,
  `colour`, by default the most frequent) or any folder of audio (its sub-folders are the colours
  when it has several);
* embeddings: each track's mean chunk embedding, the exporter's (evaluate/export.py), compared by
  cosine similarity; each query (every track, or a seeded sample of `queries`) lists its k nearest
  other tracks;
* audio: an excerpt of every track shown, as the model hears it (mono, the model's rate), written
  as 16-bit wav beside the page, so the page plays from disk in any browser (relative paths, no server);
* a 2-D map of all tracks: PCA of the unit-length embeddings, drawn as inline SVG.
With classes, the page (and the return value) states how often a neighbour shares its query's
class, against the rate a random other track would; with tags, the mean share of the query's tags
that a neighbour has, against the share a random other track has. Memory stays bounded: the
similarities are computed a block of BLOCK queries at a time, never as one N x N matrix.
"""
import html
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from sklearn.decomposition import PCA

from ssl_min.data.labeled import load_labeled
from ssl_min.data.source import open_tracks
from ssl_min.evaluate.export import track_embeddings
from ssl_min.models.load import load_encoder
from ssl_min.runtime.formulation import resolve_conv

BLOCK = 1024                    # query rows of the similarity matrix held at once
COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]


def tracks_and_labels(data, rate):
    """-> ([Track], [label or None], [set of tags] or None): a labeled layout's tracks (its classes as
    labels when multi-class, its tags when multi-label), else a folder's audio files (their first
    sub-folder as label when there are several; files at the top are labelled "(top level)")."""
    try:
        sets = load_labeled(data, rate)
    except (ValueError, FileNotFoundError):
        sets = None
    if sets:
        seen, tracks, labels, tags = set(), [], [], []
        for ls in sets.values():
            for t, y in zip(ls.tracks, ls.targets):
                if t.path not in seen:
                    seen.add(t.path)
                    tracks.append(t)
                    if ls.task == "multiclass":
                        labels.append(ls.names[int(y)])
                    else:
                        labels.append(None)
                        tags.append({n for n, v in zip(ls.names, y) if v})
        return tracks, labels, (tags if tags else None)
    tracks = open_tracks(data, rate, cache="off")[0]
    parts = [Path(t.path).relative_to(data).parts for t in tracks]
    folders = [p[0] if len(p) > 1 else "(top level)" for p in parts]
    return tracks, folders if len(set(folders) - {"(top level)"}) > 1 else [None] * len(tracks), None


def same_label_rate(neighbours, labels, queries):
    """-> (share of neighbour slots whose label is the query's, the share a random other track would
    give), over the queries that have a label; (None, None) without labels."""
    labelled = [q for q in queries if labels[q] is not None]
    if not labelled:
        return None, None
    counts = {c: labels.count(c) for c in set(labels)}
    hit = np.mean([labels[j] == labels[q] for q in labelled for j in neighbours[q]])
    chance = np.mean([(counts[labels[q]] - 1) / (len(labels) - 1) for q in labelled])
    return float(hit), float(chance)


def shared_tag_share(neighbours, tags, queries):
    """-> (mean share of a query's tags that its neighbour has, the same for a random other track),
    over the queries with at least one tag; (None, None) without tags."""
    names = sorted(set().union(*tags))
    y = torch.tensor([[n in t for n in names] for t in tags], dtype=torch.float64)    # (N, T)
    tagged = [q for q in queries if tags[q]]
    if not tagged:
        return None, None
    hit = np.mean([len(tags[q] & tags[j]) / len(tags[q]) for q in tagged for j in neighbours[q]])
    counts = y.sum(0)                                                  # tracks per tag
    # a random other track j != q has tag n with probability (count_n - 1) / (N - 1) for each n of q
    chance = np.mean([float(((counts - 1) / (len(tags) - 1))[y[q] > 0].mean()) for q in tagged])
    return float(hit), float(chance)


def nearest(unit, k):
    """unit (N, D) unit-length rows -> (indices (N, k), cosines (N, k)) of each row's k nearest other
    rows, BLOCK rows at a time (memory N x BLOCK, not N x N)."""
    indices, values = [], []
    for lo in range(0, len(unit), BLOCK):
        sim = unit[lo:lo + BLOCK] @ unit.T                             # (b, N)
        sim[torch.arange(sim.shape[0]), torch.arange(lo, lo + sim.shape[0])] = -float("inf")   # not itself
        top = sim.topk(k, dim=1)
        indices.append(top.indices)
        values.append(top.values)
    return torch.cat(indices), torch.cat(values)


def write_excerpt(track, path, seconds):
    """Up to `seconds` from the middle of the track, as the model hears it, 16-bit wav."""
    n = min(track.length, int(seconds * track.sample_rate))
    start = (track.length - n) // 2 // track.ratio[1] * track.ratio[1]      # on the resampler's grid
    x = track.read(start, n).numpy()
    sf.write(path, np.clip(x, -1, 1), track.sample_rate, subtype="PCM_16")


def map_svg(points, labels, names, size=420):
    """points (n, 2) -> an inline SVG scatter, one colour per label, each point titled."""
    lo, hi = points.min(0), points.max(0)
    xy = 20 + (points - lo) / np.where(hi > lo, hi - lo, 1) * (size - 40)
    palette = {c: COLOURS[i % len(COLOURS)] for i, c in enumerate(sorted({str(c) for c in labels}))}
    dots = "".join(f'<circle cx="{x:.1f}" cy="{size - y:.1f}" r="4" fill="{palette[str(c)]}" fill-opacity="0.75">'
                   f'<title>{html.escape(n)} ({html.escape(str(c))})</title></circle>'
                   for (x, y), c, n in zip(xy, labels, names))
    legend = " ".join(f'<span style="color:{col}">&#9679; {html.escape(c)}</span>' for c, col in palette.items()
                      if c != "None")
    return f'<svg width="{size}" height="{size}" style="border:1px solid #ccc">{dots}</svg><p>{legend}</p>'


def build_page(checkpoint, data, out, k=5, queries=60, seconds=8.0, seed=0, conv="auto", device="cpu",
               num_workers=2, colour=None):
    """-> {"tracks", "queries", "k", "same_label", "chance", "shared_tags", "tag_chance", "colour"};
    writes out/index.html and out/audio/. colour: the tag the map is coloured by (tagged layouts)."""
    encoder, info = load_encoder(checkpoint)
    encoder.conv, line = resolve_conv(conv, device, info["arch"], info["chunk_samples"])
    print(line)
    encoder = encoder.to(device)
    tracks, labels, tags = tracks_and_labels(data, info["sample_rate"])
    if tags is not None:
        freq = {n: sum(n in t for t in tags) for n in sorted(set().union(*tags))}
        if colour is not None and colour not in freq:
            raise ValueError(f"--colour {colour}: not a tag of {data} (its tags: {', '.join(freq)})")
        colour = colour or max(freq, key=freq.get)                     # the most frequent tag
        labels = [colour if colour in t else f"not {colour}" for t in tags]
    elif colour is not None:
        raise ValueError(f"--colour {colour}: {data} has no tags (a class or folder colours its map)")
    if len(tracks) < 2:
        raise ValueError(f"{data}: {len(tracks)} usable track(s); neighbours need at least 2")
    emb = torch.zeros(len(tracks), encoder.out_dim)
    for i, feats in track_embeddings(encoder, tracks, info["chunk_samples"], num_workers=num_workers, device=device):
        emb[i] = feats.mean(0)
    unit = torch.nn.functional.normalize(emb.double(), dim=1)
    k = min(k, len(tracks) - 1)
    near_indices, near_values = nearest(unit, k)
    chosen = (sorted(torch.randperm(len(tracks), generator=torch.Generator().manual_seed(seed))[:queries].tolist())
              if len(tracks) > queries else list(range(len(tracks))))
    neighbours = {q: near_indices[q].tolist() for q in chosen}
    hit, chance = (None, None) if tags is not None else same_label_rate(neighbours, labels, chosen)
    shared, tag_chance = shared_tag_share(neighbours, tags, chosen) if tags is not None else (None, None)

    out = Path(out)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    shown = sorted({j for q in chosen for j in [q, *neighbours[q]]})
    for j in shown:
        write_excerpt(tracks[j], out / "audio" / f"{j:05d}.wav", seconds)
    names = [os.path.relpath(os.path.normpath(t.path), data) for t in tracks]
    points = PCA(2, svd_solver="full").fit_transform(unit.numpy())

    def cell(j, score=None):
        if tags is not None:
            tag = f' <b>{html.escape(", ".join(sorted(tags[j])) or "(no tag)")}</b>'
        else:
            tag = "" if labels[j] is None else f' <b>{html.escape(labels[j])}</b>'
        sim_text = "" if score is None else f" <small>cos {score:.3f}</small>"
        return (f'<td><audio controls preload="metadata" src="audio/{j:05d}.wav"></audio><br>'
                f'{html.escape(names[j])}{tag}{sim_text}</td>')

    rows = "".join(f'<tr id="q{q}">{cell(q)}' + "".join(cell(j, float(s)) for j, s in
                                                       zip(neighbours[q], near_values[q].tolist())) + "</tr>"
                   for q in chosen)
    rate = ("" if hit is None else f"<p>A neighbour shares its query's class in <b>{100 * hit:.1f} %</b> of the "
            f"{len(chosen) * k} slots; a random other track would in {100 * chance:.1f} %.</p>")
    if shared is not None:
        rate = (f"<p>A neighbour has <b>{100 * shared:.1f} %</b> of its query's tags on average (over the "
                f"{len(chosen) * k} slots); a random other track has {100 * tag_chance:.1f} %. The map is coloured by "
                f"the tag <b>{html.escape(colour)}</b>.</p>")
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>ssl_min neighbours</title>
<style>body{{font-family:sans-serif;margin:1.5em}} td{{padding:4px 8px;vertical-align:top;font-size:12px}}
audio{{width:190px}} tr:nth-child(odd){{background:#f4f6fa}}</style></head><body>
<h1>Nearest neighbours</h1>
<p>{html.escape(str(checkpoint))} ({html.escape(info['source'])} encoder) on {html.escape(str(data))}: {len(tracks)}
tracks, each the mean of its chunk embeddings; {len(chosen)} queries, their {k} nearest other tracks by cosine
similarity. Excerpts of up to {seconds:g} s as the model hears them ({info['sample_rate']} Hz, mono).</p>
{rate}<p id="players">checking the players ...</p>
<h2>Map</h2><p>PCA of the unit-length track embeddings.</p>{map_svg(points, labels, names)}
<h2>Queries</h2><table><tr><th>query</th>{"".join(f"<th>neighbour {i + 1}</th>" for i in range(k))}</tr>{rows}</table>
<script>
const players = Array.from(document.querySelectorAll("audio"));
let ready = 0, failed = 0;
function report() {{
  const text = ready + " of " + players.length + " players ready" + (failed ? ", " + failed + " failed" : "");
  document.getElementById("players").textContent = text;
  document.title = "ssl_min neighbours: " + text;
}}
players.forEach(a => {{
  if (a.readyState >= 1) ready++;
  else {{ a.addEventListener("loadedmetadata", () => {{ ready++; report(); }});
         a.addEventListener("error", () => {{ failed++; report(); }}); }}
}});
report();
</script></body></html>
"""
    (out / "index.html").write_text(page)
    stats = {"tracks": len(tracks), "queries": len(chosen), "k": k, "same_label": hit, "chance": chance,
             "shared_tags": shared, "tag_chance": tag_chance, "colour": colour}
    print(f"wrote {out / 'index.html'}: {len(chosen)} queries x {k} neighbours, {len(shown)} excerpts"
          + ("" if hit is None else f"; a neighbour shares its query's class {100 * hit:.1f} % of the time "
                                    f"(chance {100 * chance:.1f} %)")
          + ("" if shared is None else f"; a neighbour has {100 * shared:.1f} % of its query's tags "
                                       f"(a random other track {100 * tag_chance:.1f} %); map coloured by {colour}"))
    return stats
