"""The HEAR 2021 common API (hearbenchmark.com), so evaluation suites can take an ssl_min encoder.

    import ssl_min.hear as hear
    model = hear.load_model("runs/demo/checkpoint.pt")      # ssl_min's or CLMR's checkpoint
    scene = hear.get_scene_embeddings(audio, model)          # audio: (n_sounds, n_samples) float32
    emb, ts = hear.get_timestamp_embeddings(audio, model)    # at model.sample_rate

* `load_model(model_file_path="")` -> a torch.nn.Module with `sample_rate`, `scene_embedding_size`
  and `timestamp_embedding_size`. An empty path gives CLMR's architecture with random weights
  (ssl_min ships no trained weights); any path goes through ssl_min/models/load.py. `conv`: the
  encoder's formulation, "auto" (measured on the CPU, the reference on CUDA), "reference" or "fast".
  `features`: "output" (the encoder's output, the default) or "blocks" (every block's mean and std
  over each chunk, the probe's layer-wise readout): the embedding sizes say which width results.
* Timestamp embeddings: one encoder chunk centred every `timestamp_hop_ms` (250 ms), the audio
  zero-padded by half a chunk on each side, so frame k is centred at k * hop and
  n_timestamps = n_samples // hop + 1 (>= 1: audio shorter than a chunk works). Timestamps in ms.
* Scene embeddings: the mean over non-overlapping chunks (zero-padded to at least one), the same
  aggregation as the probe and the exporter.
The encoder runs in eval mode (BatchNorm running statistics), so an embedding does not depend on
which other sounds share its batch; work is done in batches of `batch_size` chunks.
"""
import torch
import torch.nn as nn

from ssl_min.data.audio import split_chunks
from ssl_min.evaluate.blocks import readout
from ssl_min.models.load import CLMR_INFO, load_encoder, pick_device
from ssl_min.models.samplecnn import SampleCNN
from ssl_min.runtime.formulation import resolve_conv


class HEARModel(nn.Module):
    """features: "output" (the encoder's output, D = encoder.out_dim) or "blocks" (every block's
    mean and std over the chunk, ssl_min/evaluate/blocks.py; D their total width)."""

    def __init__(self, encoder, sample_rate, chunk_samples, timestamp_hop_ms=250.0, batch_size=64, features="output"):
        super().__init__()
        self.encoder = readout(encoder, features).eval()
        self.sample_rate, self.chunk, self.features = int(sample_rate), int(chunk_samples), features
        with torch.no_grad():
            device = next(self.encoder.parameters()).device
            dim = self.encoder(torch.zeros(1, 1, self.chunk, device=device)).shape[1]
        self.scene_embedding_size = self.timestamp_embedding_size = dim
        self.timestamp_hop_ms, self.batch_size = timestamp_hop_ms, batch_size

    def embed_chunks(self, chunks):
        """(n, chunk) -> (n, D), in batches, no gradients."""
        with torch.no_grad():
            device = next(self.encoder.parameters()).device
            return torch.cat([self.encoder(chunks[i:i + self.batch_size, None].to(device)).float()
                              for i in range(0, len(chunks), self.batch_size)])


def load_model(model_file_path: str = "", conv: str = "auto", features: str = "output") -> HEARModel:
    if not model_file_path:
        encoder, info = SampleCNN(CLMR_INFO["n_blocks"]), {**CLMR_INFO, "arch": (CLMR_INFO["n_blocks"], 1.0, "flatten")}
    else:
        encoder, info = load_encoder(model_file_path)
    encoder.conv = resolve_conv(conv, pick_device("auto"), info["arch"], info["chunk_samples"])[0]
    return HEARModel(encoder, info["sample_rate"], info["chunk_samples"], features=features)


def _check(audio, model):
    if not isinstance(audio, torch.Tensor) or audio.dim() != 2:
        raise ValueError(f"audio must be a (n_sounds, n_samples) tensor, got {type(audio).__name__} "
                         f"{tuple(getattr(audio, 'shape', ()))}")
    return audio.float()


def get_timestamp_embeddings(audio: torch.Tensor, model: HEARModel):
    """audio (n_sounds, n_samples) -> (embeddings (n_sounds, n_timestamps, D), timestamps (n_sounds, n_timestamps) ms)."""
    audio = _check(audio, model)
    n_sounds, n_samples = audio.shape
    hop = max(1, round(model.timestamp_hop_ms * model.sample_rate / 1000))
    half = model.chunk // 2
    padded = nn.functional.pad(audio, (half, model.chunk - half))       # frame k: [k hop, k hop + chunk)
    n_frames = n_samples // hop + 1
    frames = padded.unfold(1, model.chunk, hop)[:, :n_frames]            # (n_sounds, n_frames, chunk)
    emb = model.embed_chunks(frames.reshape(-1, model.chunk)).reshape(n_sounds, n_frames, -1)
    times = (torch.arange(n_frames, dtype=torch.float32) * hop * 1000 / model.sample_rate)
    return emb, times.expand(n_sounds, n_frames).clone()


def get_scene_embeddings(audio: torch.Tensor, model: HEARModel) -> torch.Tensor:
    """audio (n_sounds, n_samples) -> (n_sounds, D): the mean over non-overlapping chunks."""
    chunks = split_chunks(_check(audio, model), model.chunk)            # (n_sounds, n_chunks, chunk)
    emb = model.embed_chunks(chunks.flatten(0, 1)).reshape(*chunks.shape[:2], -1)
    return emb.mean(1)
