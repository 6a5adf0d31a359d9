"""Models: CLMR's SampleCNN as CLMR writes it, the projector, and a faster formulation beside it.

    samplecnn.py  SampleCNN (raw waveform -> one vector per clip), Projector, FrameModel
    context.py    a Transformer over SampleCNN's frames: the masked objective's encoder
    build.py      build_encoder, build_model: the networks from config fields
    fast.py       the same network's parameters run channels-last: conv.py, stem.py (--conv fast)
    conv.py       a kernel-3 Conv1d as a channels-last Conv2d, its weight gradient as matrix products
    stem.py       the strided stem as one matrix product, its BatchNorm folded into it
    load.py       any checkpoint (ours, CLMR's) -> a frozen encoder
No file here does I/O except load.py (it reads a checkpoint).
"""
from ssl_min.models.load import clmr_to_ssl_min, load_encoder
from ssl_min.models.build import build_encoder, build_model, context_of
from ssl_min.models.context import MaskedEncoder, MaskedModel
from ssl_min.models.samplecnn import CLMR_CHANNELS, CONVS, ContrastiveModel, Projector, SampleCNN, channels

__all__ = ["clmr_to_ssl_min", "load_encoder", "build_encoder", "build_model", "context_of", "MaskedEncoder",
           "MaskedModel", "CLMR_CHANNELS", "CONVS", "ContrastiveModel", "Projector", "SampleCNN", "channels"]
