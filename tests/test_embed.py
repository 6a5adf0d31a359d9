"""Embeddings for downstream use: the exporter, the HEAR 2021 API, and CLMR's checkpoints."""
import csv

import numpy as np
import pytest
import torch
import torch.nn as nn

import train
from conftest import SR, TINY, write_tracks
from ssl_min import hear
from ssl_min.data import scan_folder, track_chunks
from ssl_min.embed import export
from ssl_min.models.load import clmr_to_ssl_min, load_encoder
from ssl_min.models import SampleCNN


@pytest.fixture
def ckpt(audio_dir, tmp_path):
    train.main(["--data", str(audio_dir), "--out", str(tmp_path / "run"), *TINY, "--max_steps", "2"])
    return tmp_path / "run" / "checkpoint.pt"


# ---- the exporter ----

def test_export_round_trip_skips_done_files_and_names_bad_ones(ckpt, tmp_path, capsys):
    data = tmp_path / "music"
    write_tracks(data / "sub", 3, seconds=1.3)
    (data / "broken.wav").write_bytes(b"not audio at all")
    out = tmp_path / "emb"
    done, already, report = export(ckpt, data, out, num_workers=0)
    assert (done, already) == (3, 0) and "broken.wav" in str(report.skipped)
    assert "broken.wav" in capsys.readouterr().out
    encoder, info = load_encoder(ckpt)
    for t in scan_folder(data, SR, verbose=False)[0]:
        with torch.no_grad():
            direct = encoder(track_chunks(t, info["chunk_samples"])).mean(0).numpy()   # mean over chunks
        saved = np.load(out / "sub" / (t.path.rsplit("/", 1)[1] + ".npy"))
        np.testing.assert_allclose(saved, direct, rtol=1e-5, atol=1e-6)
    rows = list(csv.reader((out / "index.csv").read_text().splitlines()))
    assert rows[0] == ["file", "seconds", "shape", "features", "dim"] and len(rows) == 4
    assert rows[1][2:] == [str(encoder.out_dim), "output", str(encoder.out_dim)]
    assert export(ckpt, data, out, num_workers=0)[:2] == (0, 3)                    # a second run skips


def test_a_second_checkpoint_never_keeps_the_first_ones_files(ckpt, audio_dir, tmp_path):
    from ssl_min.evaluate.export import MixedExport
    train.main(["--data", str(audio_dir), "--out", str(tmp_path / "other"), *TINY, "--max_steps", "2", "--seed", "1"])
    other = tmp_path / "other" / "checkpoint.pt"
    data, out = tmp_path / "music", tmp_path / "emb"
    write_tracks(data, 3, seconds=1.3)
    assert export(ckpt, data, out, num_workers=0)[:2] == (3, 0)
    first = {p.name: np.load(p) for p in out.glob("*.npy")}
    with pytest.raises(MixedExport, match="another encoder"):
        export(other, data, out, num_workers=0)
    assert {p.name: np.load(p).tolist() for p in out.glob("*.npy")} == {k: v.tolist() for k, v in first.items()}
    assert export(other, data, out, num_workers=0, overwrite=True)[:2] == (3, 0)    # every file again
    encoder, info = load_encoder(other)
    for t in scan_folder(data, SR, verbose=False)[0]:
        with torch.no_grad():
            direct = encoder(track_chunks(t, info["chunk_samples"])).mean(0).numpy()
        np.testing.assert_allclose(np.load(out / (t.path.rsplit("/", 1)[1] + ".npy")), direct, rtol=1e-5, atol=1e-6)
    # the same encoder again: only a changed source file is exported again
    write_tracks(data, 1, seconds=2.0, seed=5)                                       # track000.wav rewritten
    assert export(other, data, out, num_workers=0)[:2] == (1, 2)
    with pytest.raises(MixedExport, match="timestamps"):
        export(other, data, out, timestamps=True, num_workers=0)


def test_export_with_timestamps(ckpt, tmp_path):
    data = tmp_path / "music"
    write_tracks(data, 2, seconds=1.0)
    export(ckpt, data, tmp_path / "emb", timestamps=True, num_workers=2)
    emb, times = np.load(tmp_path / "emb" / "track000.wav.npy"), np.load(tmp_path / "emb" / "track000.wav.times.npy")
    assert emb.shape == (4, 64) and np.allclose(times, [0.125, 0.375, 0.625, 0.875])  # 2000-sample chunks at 8 kHz


# ---- HEAR 2021 ----

def test_hear_contract(ckpt):
    model = hear.load_model(str(ckpt))
    assert isinstance(model, nn.Module) and model.sample_rate == SR
    assert model.scene_embedding_size == model.timestamp_embedding_size == 64
    audio = torch.randn(3, SR * 2) * 0.1
    scene = hear.get_scene_embeddings(audio, model)
    assert scene.shape == (3, 64) and scene.dtype == torch.float32
    emb, ts = hear.get_timestamp_embeddings(audio, model)
    assert emb.shape == (3, 9, 64) and ts.shape == (3, 9) and emb.dtype == ts.dtype == torch.float32
    assert torch.all(ts[:, 1:] > ts[:, :-1]) and ts[0, 1] == 250.0               # increasing, 250 ms hop
    # Batch-size invariance: each sound alone gives what it gives in the batch.
    for i in range(3):
        torch.testing.assert_close(hear.get_scene_embeddings(audio[i:i + 1], model)[0], scene[i])
        torch.testing.assert_close(hear.get_timestamp_embeddings(audio[i:i + 1], model)[0][0], emb[i])
    short = torch.randn(2, 100)                                                   # shorter than one chunk
    assert hear.get_scene_embeddings(short, model).shape == (2, 64)
    assert hear.get_timestamp_embeddings(short, model)[0].shape == (2, 1, 64)


# TINY's encoder: a 16-channel stem, blocks of 16, 16 and 32 channels, then the last conv's 64; every one
# has more than one frame in a 2000-sample chunk, so each gives a mean and a std.
BLOCKS_DIM = 2 * (16 + 16 + 16 + 32 + 64)


def test_export_and_hear_read_every_block_with_the_documented_shapes(ckpt, tmp_path):
    from ssl_min.evaluate import BlockStats
    from ssl_min.evaluate.export import MixedExport
    data, out = tmp_path / "music", tmp_path / "emb"
    write_tracks(data, 2, seconds=1.3)
    assert export(ckpt, data, out, num_workers=0, features="blocks")[:2] == (2, 0)
    encoder, info = load_encoder(ckpt)
    t = scan_folder(data, SR, verbose=False)[0][0]
    with torch.no_grad():
        direct = BlockStats(encoder.eval())(track_chunks(t, info["chunk_samples"])).mean(0).numpy()
    saved = np.load(out / "track000.wav.npy")
    assert saved.shape == (BLOCKS_DIM,)
    np.testing.assert_allclose(saved, direct, rtol=1e-5, atol=1e-6)
    rows = list(csv.reader((out / "index.csv").read_text().splitlines()))
    assert rows[1][2:] == [str(BLOCKS_DIM), "blocks", str(BLOCKS_DIM)]
    with pytest.raises(MixedExport, match="features"):                              # never mixed with outputs
        export(ckpt, data, out, num_workers=0)
    model = hear.load_model(str(ckpt), features="blocks")
    assert model.scene_embedding_size == model.timestamp_embedding_size == BLOCKS_DIM
    audio = torch.randn(3, SR * 2) * 0.1
    assert hear.get_scene_embeddings(audio, model).shape == (3, BLOCKS_DIM)
    emb, ts = hear.get_timestamp_embeddings(audio, model)
    assert emb.shape == (3, 9, BLOCKS_DIM) and ts.shape == (3, 9)
    with pytest.raises(ValueError, match="features"):
        hear.load_model(str(ckpt), features="auto")


def test_hear_default_model_is_clmrs_architecture():
    model = hear.load_model()
    assert (model.sample_rate, model.chunk, model.scene_embedding_size) == (22050, 59049, 512)


# ---- CLMR's checkpoints ----

def clmr_reference_encoder():
    """CLMR's SampleCNN as its repository nests it (sequential.<i>.<j>), written here from its
    architecture: stem, 9 blocks, last conv. Random weights and BatchNorm statistics."""
    ch = (128, 128, 128, 256, 256, 256, 256, 256, 256, 512)
    seq = [nn.Sequential(nn.Conv1d(1, 128, 3, stride=3, padding=0), nn.BatchNorm1d(128), nn.ReLU())]
    for i in range(9):
        seq.append(nn.Sequential(nn.Conv1d(ch[i], ch[i + 1], 3, padding=1), nn.BatchNorm1d(ch[i + 1]), nn.ReLU(),
                                 nn.MaxPool1d(3, stride=3)))
    seq.append(nn.Sequential(nn.Conv1d(512, 512, 3, padding=1), nn.BatchNorm1d(512), nn.ReLU()))
    model = nn.Module()
    model.sequential = nn.Sequential(*seq)
    model.fc = nn.Identity()                                  # SimCLR replaces CLMR's fc
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("form", ["lightning", "state_dict"])
def test_a_clmr_checkpoint_loads_and_gives_the_clmr_models_output(tmp_path, form):
    ref = clmr_reference_encoder()
    state = ref.state_dict()
    projector = {"projector.0.weight": torch.randn(512, 512), "projector.2.weight": torch.randn(64, 512)}
    if form == "lightning":    # the Lightning module holds the encoder twice: as `encoder` and inside `model`
        sd = {**{f"model.encoder.{k}": v for k, v in state.items()}, **{f"encoder.{k}": v for k, v in state.items()},
              **{f"model.{k}": v for k, v in projector.items()}}
        obj = {"pytorch-lightning_version": "1.3.8", "state_dict": sd, "epoch": 3}
    else:
        obj = {**{f"encoder.{k}": v for k, v in state.items()}, **projector}
    torch.save(obj, tmp_path / "clmr.ckpt")
    encoder, info = load_encoder(tmp_path / "clmr.ckpt")
    assert info["sample_rate"] == 22050 and info["chunk_samples"] == 59049 and info["source"].startswith("CLMR")
    x = torch.randn(2, 1, 59049)
    with torch.no_grad():
        torch.testing.assert_close(encoder(x), ref.sequential(x).flatten(1), rtol=1e-5, atol=1e-5)


def test_the_clmr_mapping_covers_every_tensor_exactly_once():
    mapped = clmr_to_ssl_min(clmr_reference_encoder().state_dict())
    assert set(mapped) == set(SampleCNN(9).state_dict())
    with pytest.raises(KeyError, match="unexpected key"):
        clmr_to_ssl_min({"conv1.weight": torch.zeros(1)})


def test_probe_py_takes_a_clmr_checkpoint(tmp_path):
    import probe
    from test_probe import tutorial_layout
    state = clmr_reference_encoder().state_dict()
    torch.save({f"encoder.{k}": v for k, v in state.items()}, tmp_path / "clmr.pt")
    data = tutorial_layout(tmp_path / "labeled", 8, splits=("train", "valid", "test"))
    report = probe.main(["--checkpoint", str(tmp_path / "clmr.pt"), "--data", str(data), "--num_workers", "0",
                         "--rows", "pretrained", "--conv", "reference", "--features", "output"])  # no timing
    assert report["encoder"] == "CLMR (state dict)" and np.isfinite(report["results"]["pretrained"]["roc_auc"])
