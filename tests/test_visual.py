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
