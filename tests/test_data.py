"""Audio discovery, bad input, chunk reading (direct vs cache), pairs, workers, labeled layouts."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from ssl_min import data as D
from ssl_min.prepare import prepare

SR = 16000


def tone(seconds, rate, channels=1, freq=220.0, seed=0):
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    x = 0.3 * np.sin(2 * np.pi * freq * t)[:, None] + 0.05 * rng.standard_normal((len(t), channels))
    return x.astype(np.float32)


def write(path, seconds, rate, channels=1, seed=0, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(seconds, rate, channels, 110.0 * (1 + seed % 5), seed), rate, **kw)
    return path


@pytest.fixture
def music(tmp_path):
    """Every format, several rates and channel counts, plus every kind of bad file."""
    root = tmp_path / "music"
    write(root / "a.wav", 3, 16000, 1, seed=1)
    write(root / "sub" / "b.flac", 3, 44100, 2, seed=2)
    write(root / "sub" / "deeper" / "c.ogg", 3, 48000, 1, seed=3)
    write(root / "d.mp3", 3, 22050, 2, seed=4)
    write(root / "e.wav", 3, 8000, 6, seed=5)                        # 5.1
    write(root / "f.opus", 3, 48000, 1, seed=6, format="OGG", subtype="OPUS")
    write(root / "g.aiff", 3, 32000, 1, seed=7)
    # bad ones
    (root / "not_audio.mp3").write_text("this is not an mp3")
    (root / "zero.wav").write_bytes(b"")
    sf.write(root / "empty.wav", np.zeros((0, 1), np.float32), 16000)
    sf.write(root / "silent.wav", np.zeros((16000, 1), np.float32), 16000)
    nan = tone(1, 16000)
    nan[100] = np.nan
    sf.write(root / "nan.wav", nan, 16000, subtype="FLOAT")
    write(root / "short.wav", 0.2, 16000, seed=8)
    with open(root / "sub" / "truncated.flac", "wb") as f:
        f.write(open(root / "sub" / "b.flac", "rb").read()[:300])
    (root / "notes.txt").write_text("not audio, ignored")
    return root


def test_scan_finds_formats_and_reports_every_bad_file(music, capsys):
    tracks, report = D.scan_folder(music, SR)
    names = sorted(t.path.split("/")[-1] for t in tracks)
    assert names == ["a.wav", "b.flac", "c.ogg", "d.mp3", "e.wav", "f.opus", "g.aiff", "short.wav"]
    reasons = {r: [p.split("/")[-1] for p in ps] for r, ps in report.skipped.items()}
    assert reasons["silent"] == ["silent.wav"]
    assert reasons["NaN or Inf samples"] == ["nan.wav"]
    assert sorted(sum((v for r, v in reasons.items() if "unreadable" in r or "zero" in r or "corrupt" in r), [])) == \
        ["empty.wav", "not_audio.mp3", "truncated.flac", "zero.wav"]
    out = capsys.readouterr().out
    assert "6 skipped" in out and "silent.wav" in out
    # The index is cached: a second scan reads the JSON and gives the same answer.
    assert (music / ".ssl_min_index.json").exists()
    again, report2 = D.scan_folder(music, SR, verbose=False)
    assert [t.path for t in again] == [t.path for t in tracks] and report2.skipped == report.skipped


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no audio files"):
        D.scan_folder(tmp_path, SR)


def test_short_tracks_are_skipped_for_pairs_and_said(music, capsys):
    tracks, _ = D.scan_folder(music, SR, verbose=False)
    ds = D.PairDataset(tracks, 8000, seed=0)
    assert len(ds) == 7 and "skipped 1 tracks shorter than one chunk" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["a.wav", "sub/b.flac", "sub/deeper/c.ogg", "d.mp3", "e.wav", "g.aiff"])
def test_chunk_reads_equal_the_whole_resampled_track(music, name):
    track = next(t for t in D.scan_folder(music, SR, verbose=False)[0] if t.path.endswith(name))
    whole = track.read_all()
    assert whole.shape == (track.length,)
    period = track.ratio[1]
    for start in (0, period * 7, (track.length - 4000) // period * period):
        chunk = track.read(start, 4000)
        assert chunk.shape == (4000,)
        torch.testing.assert_close(chunk, whole[start:start + 4000], atol=1e-6, rtol=0)


def test_mono_is_the_mean_of_channels(music):
    track = next(t for t in D.scan_folder(music, SR, verbose=False)[0] if t.path.endswith("e.wav"))
    raw, _ = sf.read(track.path, dtype="float32")
    assert raw.shape[1] == 6
    torch.testing.assert_close(track.decode(), torch.from_numpy(raw.mean(axis=1)))


@pytest.mark.parametrize("dtype,atol", [("float32", 1e-6), ("int16", 1.0 / 32767)])
def test_cache_gives_the_same_samples_as_the_files(music, tmp_path, dtype, atol):
    prepare(music, tmp_path / "cache", SR, dtype=dtype, workers=1)
    direct = {t.path: t for t in D.scan_folder(music, SR, verbose=False)[0]}
    cached = D.tracks_from(tmp_path / "cache", SR)
    assert sorted(t.path for t in cached) == sorted(direct)
    ds_direct = D.PairDataset(list(direct.values()), 4000, seed=5, verbose=False)
    ds_cache = D.PairDataset(sorted(cached, key=lambda t: list(direct).index(t.path)), 4000, seed=5, verbose=False)
    for i in range(2 * len(ds_direct)):
        for a, b in zip(ds_direct[i], ds_cache[i]):
            torch.testing.assert_close(a, b, atol=atol, rtol=0)
    meta = json.loads((tmp_path / "cache" / "index.json").read_text())
    assert "silent" in meta["skipped"]


def test_pairs_come_from_one_track_with_exact_lengths(tmp_path):
    # Each track a different constant level: a pair mixing two tracks would show two levels.
    root = tmp_path / "levels"
    root.mkdir()
    for i in range(6):
        sf.write(root / f"{i}.wav", np.full((SR * 2, 1), 0.1 * (i + 1), np.float32), SR)
    ds = D.PairDataset(D.scan_folder(root, SR, verbose=False)[0], 3000, seed=0)
    for sid in range(30):
        x1, x2 = ds[sid]
        assert x1.shape == x2.shape == (1, 3000)
        level = round(0.1 * (sid % 6 + 1), 4)
        assert (x1 - level).abs().max() < 1e-3 and (x2 - level).abs().max() < 1e-3   # 16-bit wav


def test_offsets_are_independent_and_depend_on_epoch(music):
    ds = D.PairDataset(D.scan_folder(music, SR, verbose=False)[0], 4000, seed=0, verbose=False)
    same = sum(ds.offsets(i)[0][0] == ds.offsets(i)[0][1] for i in range(100))
    assert same < 10
    n = len(ds)
    assert [ds.offsets(i)[0] for i in range(n)] != [ds.offsets(i + n)[0] for i in range(n)]  # epoch 0 vs 1
    assert [ds.offsets(i)[0] for i in range(n)] == [ds.offsets(i)[0] for i in range(n)]      # reproducible


def test_two_workers_do_not_repeat_each_other(tmp_path):
    root = tmp_path / "noise"
    root.mkdir()
    for i in range(2):
        sf.write(root / f"{i}.wav", np.random.default_rng(i).uniform(-1, 1, (SR * 20, 1)).astype(np.float32), SR)
    ds = D.PairDataset(D.scan_folder(root, SR, verbose=False)[0], 1000, seed=0, verbose=False)
    sampler = D.EpochSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=0)
    chunks = []
    for epoch in range(8):
        sampler.set_epoch(epoch)
        loader = DataLoader(ds, batch_size=1, sampler=sampler, num_workers=2)
        for x1, x2 in loader:
            chunks += [x1[0, 0, :8].tolist(), x2[0, 0, :8].tolist()]
    assert len(chunks) == 32
    assert len({tuple(c) for c in chunks}) == 32   # 32 draws from 2 x 19000 offsets, none repeated


def test_tutorial_layout_multilabel_with_missing_files_and_bad_rows(tmp_path, capsys):
    root = tmp_path / "mtt_ssl"
    for split in ("train", "test"):
        write(root / split / "audio" / "x.wav", 2, SR)
        write(root / split / "audio" / "y.wav", 2, SR, seed=2)
        (root / split / "annotations.csv").write_text(
            "mp3_path,guitar,piano\naudio/x.wav,1,0\naudio/y.wav,1,1\naudio/missing.wav,1,1\naudio/x.wav,2,oops\n")
    sets = D.load_labeled(root, SR)
    assert set(sets) == {"train", "test"}
    assert sets["train"].names == ["guitar", "piano"] and sets["train"].task == "multilabel"
    assert sets["train"].targets.tolist() == [[1, 0], [1, 1]]
    out = capsys.readouterr().out
    assert "missing file" in out and "malformed row" in out


def test_csv_without_tag_columns_is_a_clear_error(tmp_path):
    root = tmp_path / "bad"
    write(root / "train" / "x.wav", 1, SR)
    (root / "train" / "annotations.csv").write_text("mp3_path\nx.wav\n")
    with pytest.raises(ValueError, match="no tag columns"):
        D.load_tutorial_split(root, "train", SR)


def test_broken_annotation_file_is_a_clear_error(tmp_path):
    root = tmp_path / "bad"
    (root / "train").mkdir(parents=True)
    (root / "train" / "annotations.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="annotation"):
        D.load_tutorial_split(root, "train", SR)


def test_class_folders_and_label_csv(tmp_path):
    root = tmp_path / "genres"
    for c in ("blues", "jazz"):
        for i in range(10):
            write(root / c / f"{c}{i}.wav", 1, SR, seed=i)
    sets = D.load_labeled(root, SR)
    assert set(sets) == {"train", "valid", "test"}
    assert sum(len(s.tracks) for s in sets.values()) == 20 and sets["test"].names == ["blues", "jazz"]
    paths = [t.path for s in sets.values() for t in s.tracks]
    assert len(set(paths)) == 20                                     # a track in exactly one split
    lab = tmp_path / "lab"
    write(lab / "train" / "a.wav", 1, SR)
    write(lab / "train" / "b.wav", 1, SR, seed=3)
    (lab / "train" / "annotations.csv").write_text("path,label\na.wav,rock\nb.wav,pop\n")
    s = D.load_tutorial_split(lab, "train", SR)
    assert s.task == "multiclass" and s.names == ["pop", "rock"] and s.targets.tolist() == [1, 0]


def test_magnatagatune_top_tags_and_published_split(tmp_path):
    root = tmp_path / "mtt"
    tags = [f"t{i}" for i in range(6)]
    lines = ["\t".join(["clip_id"] + tags + ["mp3_path"])]
    rng = np.random.default_rng(0)
    for i in range(8):
        rel = f"{'0f'[i % 2]}/clip{i}.mp3"
        write(root / rel, 1, SR, seed=i)
        row = [int(v) for v in rng.integers(0, 2, 6)]
        row[5] = 1                                                  # t5 is the most frequent tag
        lines.append("\t".join([str(i)] + [str(v) for v in row] + [rel]))
    (root / "annotations_final.csv").write_text("\n".join(lines) + "\n")
    split = tmp_path / "split"
    split.mkdir()
    np.save(split / "train.npy", np.array([f"{i}\t{'0f'[i % 2]}/clip{i}.mp3" for i in range(6)]))
    np.save(split / "test.npy", np.array([f"{i}\t{'0f'[i % 2]}/clip{i}.mp3" for i in range(6, 8)]))
    sets = D.load_labeled(root, SR, mtt_split_dir=split)
    assert len(sets["train"].tracks) == 6 and len(sets["test"].tracks) == 2
    assert sets["train"].names[0] == "t5" and len(sets["train"].names) == 6
    with pytest.raises(ValueError, match="split"):
        D.load_labeled(root, SR)


def test_track_chunks_cover_the_track_and_pad_short_ones(music):
    tracks = D.scan_folder(music, SR, verbose=False)[0]
    a = next(t for t in tracks if t.path.endswith("a.wav"))
    c = D.track_chunks(a, 4000)
    assert c.shape == (a.length // 4000, 1, 4000)
    torch.testing.assert_close(c.flatten(), a.read_all()[:c.numel()])
    short = next(t for t in tracks if t.path.endswith("short.wav"))
    assert D.track_chunks(short, 4000).shape == (1, 1, 4000)


def test_index_cache_keeps_every_subset(music, monkeypatch):
    """Splits scanned one after the other share one cache file; none evicts the other."""
    paths = D.find_audio(music)
    cache = music / ".ssl_min_index.json"
    D.scan(paths[:4], SR, cache, verbose=False)
    D.scan(paths[4:], SR, cache, verbose=False)
    calls = []
    monkeypatch.setattr(D, "check_file", lambda p: calls.append(p))
    D.scan(paths[:4], SR, cache, verbose=False)
    D.scan(paths[4:], SR, cache, verbose=False)
    assert calls == []
