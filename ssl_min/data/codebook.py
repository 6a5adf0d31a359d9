"""The masked objective's codebook: k-means over the teachers' frames of the unlabeled pool.

    fit_codebook(tracks, teachers, chunk, seed, n_chunks) -> {"centroids" (K, F), "feature_mean" (F,),
        "feature_std" (F,), "spectrum_mean" (S,), "spectrum_std" (S,)}, float32 tensors

HuBERT's first iteration: frame features (here the teachers' log-mel + chroma, objectives/teachers.py)
of the training audio, clustered by k-means; each frame's nearest centroid is its token. Here:
`n_chunks` chunks drawn from the tracks as the training pairs are (by length, pair ids -1, -2, ...,
which training never uses), every frame of them standardised per feature, then scikit-learn's
MiniBatchKMeans, seeded. The same tracks and seed give the same centroids. train.py fits it once,
on rank 0, saves it as RUN/codebook.pt (and in the checkpoint with the objective's state), and
every process installs that file's tensors.
"""
import torch
from sklearn.cluster import MiniBatchKMeans

from ssl_min.data.pairs import PairDataset


def fit_codebook(tracks, teachers, chunk, seed=0, n_chunks=512, batch=64) -> dict:
    pool = PairDataset(tracks, chunk, seed=seed, verbose=False, views=1)
    features, spectra = [], []
    for start in range(0, n_chunks, batch):
        x = torch.stack([pool[-1 - i][0] for i in range(start, min(n_chunks, start + batch))])   # (b, 1, chunk)
        f, s = teachers(x)
        features.append(f.flatten(0, 1))
        spectra.append(s.flatten(0, 1))
    features, spectra = torch.cat(features).double(), torch.cat(spectra).double()      # (frames, F), (frames, S)
    feature_mean, feature_std = features.mean(0), features.std(0).clamp(min=1e-6)
    standard = ((features - feature_mean) / feature_std).numpy()
    k = teachers.centroids.shape[0]
    if len(standard) < k:
        raise ValueError(f"the codebook needs at least K = {k} frames, got {len(standard)}: more chunks or a smaller K")
    kmeans = MiniBatchKMeans(n_clusters=k, random_state=seed, batch_size=4096, n_init=3, max_iter=100)
    kmeans.fit(standard)
    f32 = lambda a: torch.as_tensor(a, dtype=torch.float32)                  # noqa: E731
    return {"centroids": f32(kmeans.cluster_centers_), "feature_mean": f32(feature_mean),
            "feature_std": f32(feature_std), "spectrum_mean": f32(spectra.mean(0)),
            "spectrum_std": f32(spectra.std(0).clamp(min=1e-6))}
