"""Weighted k-nearest neighbours on frozen embeddings: the SSL literature's cheap read of a
representation while it trains (Wu et al. 2018's InstDisc; solo-learn's and lightly's kNN monitors).

    knn_scores(train_x (n, D), train_y (n, K), query_x (m, D), k=20, temperature=0.07) -> (m, K)

Each query's cosine similarity s_i to every training embedding; its k most similar vote, each with
weight w_i = exp(s_i / T); a class's (or a tag's) score is the weighted share of the votes,
sum_i w_i y_ik / sum_i w_i, so it lies in [0, 1] and rows are comparable across queries (what a
per-tag PR-AUC ranks). y: one-hot rows for classes, 0/1 rows for tags. k = 20 and T = 0.07 are
solo-learn's defaults; k is cut to n when the training set is smaller. No parameters, no fitting:
the score moves only when the embeddings do.
"""
import torch
import torch.nn.functional as F


def knn_scores(train_x: torch.Tensor, train_y: torch.Tensor, query_x: torch.Tensor, k: int = 20,
               temperature: float = 0.07) -> torch.Tensor:
    """train_x (n, D), train_y (n, K) float, query_x (m, D) -> (m, K) weighted vote shares."""
    if train_x.shape[0] != train_y.shape[0]:
        raise ValueError(f"{train_x.shape[0]} training embeddings but {train_y.shape[0]} label rows")
    train, query = F.normalize(train_x.double(), dim=1), F.normalize(query_x.double(), dim=1)
    top, idx = (query @ train.T).topk(min(k, train.shape[0]), dim=1)       # (m, k) similarities, indices
    w = torch.exp((top - top[:, :1]) / temperature)                         # exp(s / T), scaled by the row's max
    votes = train_y.double()[idx]                                           # (m, k, K)
    return (w[..., None] * votes).sum(1) / w.sum(1, keepdim=True)
