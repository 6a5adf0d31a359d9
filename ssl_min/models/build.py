"""The one place networks are built from config fields: the encoder, and the model an objective trains.

    build_encoder(n_blocks, width, pool, conv, context)  -> SampleCNN, or with `context` (a dict
                        {"layers", "heads"}) a MaskedEncoder: SampleCNN + Transformer (context.py)
    build_model(..., objective)  -> what train.py optimises:
        simclr, moco, vicreg, byol   ContrastiveModel: encoder + projector
        cpc                          FrameModel: the encoder's frames (its GRU lives in the objective)
        masked                       MaskedModel: frames, mask, Transformer (its heads live in the objective)
    context_of(config dict)      -> the `context` a run's encoder was built with (None but for masked)
"""
from ssl_min.models.context import MaskedEncoder, MaskedModel
from ssl_min.models.samplecnn import ContrastiveModel, FrameModel, Projector, SampleCNN


def context_of(cfg: dict) -> dict | None:
    """A train config (dict) -> {"layers", "heads"} of its Transformer context, or None."""
    if cfg.get("objective") != "masked":
        return None
    return {"layers": cfg["context_layers"], "heads": cfg["context_heads"]}


def build_encoder(n_blocks=9, width=1.0, pool="flatten", conv="reference", context=None):
    cnn = SampleCNN(n_blocks=n_blocks, width=width, pool=pool, conv=conv)
    return cnn if context is None else MaskedEncoder(cnn, **context)


def build_model(n_blocks=9, width=1.0, pool="flatten", proj_hidden=512, proj_dim=64, conv="reference",
                objective="simclr", context=None):
    if objective == "masked":
        return MaskedModel(build_encoder(n_blocks, width, pool, conv, context or {}))
    encoder = build_encoder(n_blocks, width, pool, conv)
    if objective == "cpc":
        return FrameModel(encoder)
    return ContrastiveModel(encoder, Projector(encoder.out_dim, proj_hidden, proj_dim))
