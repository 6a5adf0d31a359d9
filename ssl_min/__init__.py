"""ssl_min: contrastive self-supervised learning for music audio, small enough to read.

The parts, lowest first; a part imports only the parts before it (tests/test_layout.py holds it):

    augment/     the positive pair's audio effects, batched (torchaudio-augmentations' names)
    models/      CLMR's SampleCNN as written, the projector, and a faster formulation beside it
    objectives/  SimCLR's NT-Xent, MoCo, VICReg, BYOL
    runtime/     atomic files, processes and stopping, time budget, measured precision and formulation
    data/        audio files -> tracks -> positive pairs; labeled layouts; the demo dataset
    evaluate/    features of a frozen encoder, the MFCC baseline, the linear head, kNN, the exporter
    visual/      pictures and pages: training curves, probe bars, a page of neighbours to listen to

Above them: config.py (train.py's configuration) and presets.py (its starting values), hear.py
(the HEAR 2021 API) and the `python -m` entry points embed.py, prepare.py, demo.py, plot.py and
neighbors.py. The scripts train.py and probe.py sit beside the package.
"""
