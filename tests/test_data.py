"""Audio discovery, bad input, chunk reading (direct vs cache), pairs, workers, labeled layouts."""
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from ssl_min import data as A
from ssl_min.data import index as scan_module
from ssl_min.data import labeled as L
from ssl_min.data import pairs as P
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
    tracks, report = A.scan_folder(music, SR)
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
    again, report2 = A.scan_folder(music, SR, verbose=False)
    assert [t.path for t in again] == [t.path for t in tracks] and report2.skipped == report.skipped


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no audio files"):
        A.scan_folder(tmp_path, SR)


def test_short_tracks_are_skipped_for_pairs_and_said(music, capsys):
    tracks, _ = A.scan_folder(music, SR, verbose=False)
    ds = P.PairDataset(tracks, 8000, seed=0)
    assert len(ds.tracks) == 7 and "skipped 1 tracks shorter than one chunk" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["a.wav", "sub/b.flac", "sub/deeper/c.ogg", "d.mp3", "e.wav", "g.aiff"])
def test_chunk_reads_equal_the_whole_resampled_track(music, name):
    track = next(t for t in A.scan_folder(music, SR, verbose=False)[0] if t.path.endswith(name))
    whole = track.read_all()
    assert whole.shape == (track.length,)
    period = track.ratio[1]
    for start in (0, period * 7, (track.length - 4000) // period * period):
        chunk = track.read(start, 4000)
        assert chunk.shape == (4000,)
        torch.testing.assert_close(chunk, whole[start:start + 4000], atol=1e-6, rtol=0)


def test_mono_is_the_mean_of_channels(music):
    track = next(t for t in A.scan_folder(music, SR, verbose=False)[0] if t.path.endswith("e.wav"))
    raw, _ = sf.read(track.path, dtype="float32")
    assert raw.shape[1] == 6
    torch.testing.assert_close(track.decode(), torch.from_numpy(raw.mean(axis=1)))


@pytest.mark.parametrize("dtype,atol", [("float32", 1e-6), ("int16", 1.0 / 32767)])
def test_cache_gives_the_same_samples_as_the_files(music, tmp_path, dtype, atol):
    prepare(music, tmp_path / "cache", SR, dtype=dtype, workers=1)
    direct = {t.path: t for t in A.scan_folder(music, SR, verbose=False)[0]}
    cached = A.open_tracks(tmp_path / "cache", SR)[0]
    assert sorted(t.path for t in cached) == sorted(direct)
    ds_direct = P.PairDataset(list(direct.values()), 4000, seed=5, verbose=False)
    ds_cache = P.PairDataset(sorted(cached, key=lambda t: list(direct).index(t.path)), 4000, seed=5, verbose=False)
    for i in range(40):
        for a, b in zip(ds_direct[i], ds_cache[i]):
            torch.testing.assert_close(torch.as_tensor(a), torch.as_tensor(b), atol=atol, rtol=0)
    meta = json.loads((tmp_path / "cache" / "index.json").read_text())
    assert "silent" in meta["skipped"]


def test_pairs_come_from_one_track_with_exact_lengths(tmp_path):
    # Each track a different constant level: a pair mixing two tracks would show two levels.
    root = tmp_path / "levels"
    root.mkdir()
    for i in range(6):
        sf.write(root / f"{i}.wav", np.full((SR * 2, 1), 0.1 * (i + 1), np.float32), SR)
    ds = P.PairDataset(A.scan_folder(root, SR, verbose=False)[0], 3000, seed=0)
    for sid in range(30):
        x1, x2, i = ds[sid]
        assert x1.shape == x2.shape == (1, 3000)
        level = float(np.float32(0.1 * (int(Path(ds.tracks[i].path).stem) + 1)))
        assert (x1 - level).abs().max() < 1e-3 and (x2 - level).abs().max() < 1e-3   # 16-bit wav


def test_tracks_are_drawn_in_proportion_to_their_length(tmp_path):
    root = tmp_path / "lengths"
    root.mkdir()
    for name, seconds in [("short", 2), ("long", 20)]:
        sf.write(root / f"{name}.wav", np.full((SR * seconds, 1), 0.5, np.float32), SR)
    ds = P.PairDataset(A.scan_folder(root, SR, verbose=False)[0], 1000, seed=0, verbose=False)
    counts = np.bincount([ds.draw(k)[0] for k in range(4000)], minlength=2)
    expected = ds.n_starts.numpy() / ds.n_starts.sum().item()              # (2 s - chunk) : (20 s - chunk)
    assert np.allclose(counts / 4000, expected, atol=0.02)
    assert len(ds) == 2 * SR // 1000 + 20 * SR // 1000                      # an epoch: the non-overlapping chunks


def test_offsets_are_independent_uniform_and_reproducible(music):
    ds = P.PairDataset(A.scan_folder(music, SR, verbose=False)[0], 4000, seed=0, verbose=False)
    draws = [ds.draw(k)[:2] for k in range(300)]
    assert sum(a == b for _, (a, b) in draws) < 10
    assert draws == [ds.draw(k)[:2] for k in range(300)]                    # a function of (seed, id)
    other = P.PairDataset(ds.tracks, 4000, seed=1, verbose=False)
    assert draws != [other.draw(k)[:2] for k in range(300)]


def test_stream_sampler_ids_per_rank_and_step():
    it = iter(P.StreamSampler(batch_size=3, start_step=2, rank=1, world=2))
    assert [next(it) for _ in range(6)] == [15, 16, 17, 21, 22, 23]         # steps 2 and 3 of rank 1


def test_the_stream_crosses_epoch_ends_without_a_stall_and_workers_do_not_repeat(tmp_path):
    """Two 5-s tracks, 0.25-s chunks, batch 4: an 'epoch' (non-overlapping chunks) is 40 pairs =
    10 steps. One loader
    iterator yields 25 full batches straight through 2.5 epochs, none repeated, none short."""
    root = tmp_path / "noise"
    root.mkdir()
    for i in range(2):
        sf.write(root / f"{i}.wav", np.random.default_rng(i).uniform(-1, 1, (SR * 5, 1)).astype(np.float32), SR)
    ds = P.PairDataset(A.scan_folder(root, SR, verbose=False)[0], SR * 5 // 20, seed=0, verbose=False)
    assert len(ds) == 40
    loader = DataLoader(ds, batch_size=4, sampler=P.StreamSampler(4), num_workers=2)
    chunks, sizes = [], []
    for step, (x1, x2, ids) in enumerate(loader):
        sizes.append(len(ids))
        chunks += [tuple(c[0, :8].tolist()) for c in torch.cat([x1, x2])]
        if step == 24:
            break
    assert sizes == [4] * 25 and len(set(chunks)) == len(chunks) == 200


def test_a_cache_is_built_once_reused_and_rebuilt_when_a_file_changes(tmp_path, capsys):
    from ssl_min.data.cache import ensure_cache, needs_cache
    root = tmp_path / "ogg"
    write(root / "a.ogg", 2, 16000, seed=1)
    write(root / "b.ogg", 2, 16000, seed=2)
    tracks = A.scan_folder(root, SR, verbose=False)[0]
    assert needs_cache(tracks, SR)
    cache = ensure_cache(tracks, root, SR, workers=1)
    assert cache == root / ".ssl_min_cache" / f"{SR}hz" and "decoding 2 files once" in capsys.readouterr().out
    assert A.find_audio(root) == sorted([root / "a.ogg", root / "b.ogg"])   # the cache is never scanned as audio
    assert ensure_cache(tracks, root, SR, workers=1) == cache and "reusing" in capsys.readouterr().out
    write(root / "b.ogg", 3, 16000, seed=3)                                 # a file changes
    tracks = A.scan_folder(root, SR, verbose=False)[0]
    ensure_cache(tracks, root, SR, workers=1)
    out = capsys.readouterr().out
    assert "1 tracks reused, decoding 1 files once" in out and "1 decoded now, 1 dropped" in out
    cached = {t.path: t for t in A.open_tracks(cache, SR, verbose=False)[0]}
    b = next(t for t in tracks if t.path.endswith("b.ogg"))
    torch.testing.assert_close(cached[b.path].read_all(), b.read_all(), atol=1.0 / 32767, rtol=0)
    assert not needs_cache(A.scan_folder(music_at_rate(tmp_path, SR), SR, verbose=False)[0], SR)


def music_at_rate(root, rate):
    write(root / "pcm" / "x.wav", 1, rate)
    return root / "pcm"


def test_tutorial_layout_multilabel_with_missing_files_and_bad_rows(tmp_path, capsys):
    root = tmp_path / "mtt_ssl"
    for split in ("train", "test"):
        write(root / split / "audio" / "x.wav", 2, SR)
        write(root / split / "audio" / "y.wav", 2, SR, seed=2)
        (root / split / "annotations.csv").write_text(
            "mp3_path,guitar,piano\naudio/x.wav,1,0\naudio/y.wav,1,1\naudio/missing.wav,1,1\naudio/x.wav,2,oops\n")
    sets = L.load_labeled(root, SR)
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
        L.load_tutorial_split(root, "train", SR)


def test_broken_annotation_file_is_a_clear_error(tmp_path):
    root = tmp_path / "bad"
    (root / "train").mkdir(parents=True)
    (root / "train" / "annotations.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="annotation"):
        L.load_tutorial_split(root, "train", SR)


def test_class_folders_and_label_csv(tmp_path):
    root = tmp_path / "genres"
    for c in ("blues", "jazz"):
        for i in range(10):
            write(root / c / f"{c}{i}.wav", 1, SR, seed=i)
    sets = L.load_labeled(root, SR)
    assert set(sets) == {"train", "valid", "test"}
    assert sum(len(s.tracks) for s in sets.values()) == 20 and sets["test"].names == ["blues", "jazz"]
    paths = [t.path for s in sets.values() for t in s.tracks]
    assert len(set(paths)) == 20                                     # a track in exactly one split
    lab = tmp_path / "lab"
    write(lab / "train" / "a.wav", 1, SR)
    write(lab / "train" / "b.wav", 1, SR, seed=3)
    (lab / "train" / "annotations.csv").write_text("path,label\na.wav,rock\nb.wav,pop\n")
    s = L.load_tutorial_split(lab, "train", SR)
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
    sets = L.load_labeled(root, SR, mtt_split_dir=split)
    assert len(sets["train"].tracks) == 6 and len(sets["test"].tracks) == 2
    assert sets["train"].names[0] == "t5" and len(sets["train"].names) == 6
    with pytest.raises(ValueError, match="split"):
        L.load_labeled(root, SR)


def test_track_chunks_cover_the_track_and_pad_short_ones(music):
    tracks = A.scan_folder(music, SR, verbose=False)[0]
    a = next(t for t in tracks if t.path.endswith("a.wav"))
    c = A.track_chunks(a, 4000)
    assert c.shape == (a.length // 4000, 1, 4000)
    torch.testing.assert_close(c.flatten(), a.read_all()[:c.numel()])
    short = next(t for t in tracks if t.path.endswith("short.wav"))
    assert A.track_chunks(short, 4000).shape == (1, 1, 4000)


def test_index_cache_keeps_every_subset(music, monkeypatch):
    """Splits scanned one after the other share one cache file; none evicts the other."""
    paths = A.find_audio(music)
    cache = music / ".ssl_min_index.json"
    A.scan(paths[:4], SR, cache, verbose=False)
    A.scan(paths[4:], SR, cache, verbose=False)
    calls = []
    monkeypatch.setattr(scan_module, "check_file", lambda p: calls.append(p))
    A.scan(paths[:4], SR, cache, verbose=False)
    A.scan(paths[4:], SR, cache, verbose=False)
    assert calls == []


def test_prepare_only_caches_the_listed_files(tmp_path):
    for name in ("a", "b", "c"):
        write(tmp_path / "mtt" / "0" / f"{name}.wav", 1, SR)
    split = tmp_path / "train.txt"
    split.write_text("1\t0/a.wav\n2\t0/c.wav\n")                       # MagnaTagATune's "clip_id<TAB>path" lines
    prepare(tmp_path / "mtt", tmp_path / "cache", SR, workers=1, only=split)
    assert sorted(t.path.rsplit("/", 1)[1] for t in A.open_tracks(tmp_path / "cache", SR)[0]) == ["a.wav", "c.wav"]
