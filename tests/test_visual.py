"""Pictures and the neighbours page: valid PNGs, and a page whose every player points at a
decodable excerpt beside it, from a small folder with two sub-folders."""
import json
import re

import soundfile as sf

import train
from conftest import TINY, write_tracks
from ssl_min.visual.curves import plot_runs
from ssl_min.visual.neighbors import build_page

PNG = b"\x89PNG\r\n\x1a\n"


def test_curves_of_two_runs_are_one_png(tmp_path):
    for name, shift in (("a", 0.0), ("b", 0.5)):
        run = tmp_path / name
        run.mkdir()
        lines = [{"step": s, "epoch": 0, "loss": 5 - s / 10 + shift, "lr": 1e-3, "clips_per_s": 100.0,
                  "data_wait": 0.01} for s in range(10, 60, 10)]
        lines += [{"step": s, "knn_accuracy": 0.3 + s / 100} for s in (0, 25, 50)]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    out = plot_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "a" / "curves.png")
    data = out.read_bytes()
    assert data.startswith(PNG) and len(data) > 10_000


def test_the_page_lists_queries_with_their_neighbours_and_playable_excerpts(tmp_path, capsys):
    music = tmp_path / "music"
    write_tracks(music / "low", 5, seconds=1.0, seed=1)
    write_tracks(music / "high", 5, seconds=1.0, seed=2)
    train.main(["--data", str(music), "--out", str(tmp_path / "run"), *TINY, "--max_steps", "2"])
    stats = build_page(tmp_path / "run" / "checkpoint.pt", music, tmp_path / "page", k=3, queries=4,
                       conv="reference", num_workers=0)
    assert stats["tracks"] == 10 and stats["queries"] == 4 and stats["k"] == 3
    assert 0 <= stats["same_label"] <= 1 and abs(stats["chance"] - 4 / 9) < 1e-12     # sub-folders as labels
    page = (tmp_path / "page" / "index.html").read_text()
    queries = re.findall(r'<tr id="q(\d+)">(.*?)</tr>', page)
    assert len(queries) == 4
    for q, row in queries:
        sources = re.findall(r'<audio controls preload="metadata" src="([^"]+)">', row)
        assert len(sources) == 1 + 3 and sources[0] == f"audio/{int(q):05d}.wav"
        assert len(set(sources)) == 4                                             # never its own neighbour
        for src in sources:
            info = sf.info(str(tmp_path / "page" / src))                           # exists and decodes
            assert info.samplerate == 8000 and info.frames == 8000
    assert all(not src.startswith(("/", "file:")) for src in re.findall(r'src="([^"]+)"', page))   # opens from disk
    assert page.count("<circle") == 10                                                          # the map
    assert "a neighbour shares its query's class" in capsys.readouterr().out


def test_a_tagged_folder_shows_tags_a_map_coloured_by_a_tag_and_the_shared_tag_share(tmp_path, capsys):
    import csv
    import pytest
    music = tmp_path / "tagged"
    write_tracks(music, 12, seconds=1.0, seed=3)
    tags = {f"track{i:03d}.wav": {"low" if i < 6 else "high", *(["drums"] if i % 2 else [])} for i in range(12)}
    names = ["low", "high", "drums"]
    with open(music / "annotations.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", *names])
        for path, t in tags.items():
            w.writerow([path, *[int(n in t) for n in names]])
    train.main(["--data", str(music), "--out", str(tmp_path / "run"), *TINY, "--max_steps", "2"])
    stats = build_page(tmp_path / "run" / "checkpoint.pt", music, tmp_path / "page", k=3, queries=12,
                       conv="reference", num_workers=0)
    assert stats["colour"] == "low" or stats["colour"] == "high" or stats["colour"] == "drums"
    assert stats["same_label"] is None and 0 <= stats["shared_tags"] <= 1
    # chance, by brute force: a query's tags that a random other track has, on average
    sets = list(tags.values())
    brute = sum(sum(len(a & b) / len(a) for j, b in enumerate(sets) if j != i) / 11 for i, a in enumerate(sets)) / 12
    assert abs(stats["tag_chance"] - brute) < 1e-12
    page = (tmp_path / "page" / "index.html").read_text()
    assert "<b>drums, low</b>" in page and "of its query's tags" in page
    colours = set(re.findall(r'<circle [^>]*fill="([^"]+)"', page))
    assert len(colours) == 2 and page.count("<circle") == 12                       # the tag and the rest
    drums = build_page(tmp_path / "run" / "checkpoint.pt", music, tmp_path / "page2", k=3, queries=12,
                       conv="reference", num_workers=0, colour="drums")
    assert drums["colour"] == "drums" and drums["shared_tags"] == stats["shared_tags"]
    with pytest.raises(ValueError, match="not a tag"):
        build_page(tmp_path / "run" / "checkpoint.pt", music, tmp_path / "page3", colour="violin", num_workers=0)
