"""VICReg (Bardes, Ponce & LeCun, ICLR 2022): no negatives; collapse is prevented by the statistics
of the batch itself. Three terms on the two views' projections Z, Z' (n x d):

    invariance  s(Z, Z') = mean((Z - Z')^2)                     the views must agree
    variance    v(Z) = mean_j relu(1 - sqrt(Var(z_j) + eps))    every dimension keeps std >= 1
    covariance  c(Z) = sum_{i != j} Cov(Z)_ij^2 / d             dimensions decorrelate
    loss = lambda s(Z, Z') + mu [v(Z) + v(Z')] + nu [c(Z) + c(Z')],  lambda = mu = 25, nu = 1

transcribed from the paper's Algorithm 1 (its `mse_loss` averages over the d dimensions too;
the official repository halves the variance term, the paper does not: we follow the paper).
Var and Cov are over the batch with n - 1. Under torchrun the statistics are over the global
batch: every process gathers all projections (with their gradients) and computes the same loss.
The paper's expander is 8192-d; here the projector is the one all objectives share (proj_dim).
"""
import torch
import torch.nn.functional as F

from ssl_min.objectives.base import Objective, gather_with_grad

SIM_COEFF, STD_COEFF, COV_COEFF, EPS = 25.0, 25.0, 1.0, 1e-4     # the paper's defaults


def off_diagonal(m: torch.Tensor) -> torch.Tensor:
    """(d, d) -> (d*d - d,) the entries off the diagonal."""
    d = m.shape[0]
    return m.flatten()[:-1].view(d - 1, d + 1)[:, 1:].flatten()


def vicreg_loss(z_a: torch.Tensor, z_b: torch.Tensor, sim_coeff=SIM_COEFF, std_coeff=STD_COEFF,
                cov_coeff=COV_COEFF, eps=EPS) -> torch.Tensor:
    """z_a, z_b: (n, d) -> scalar."""
    n, d = z_a.shape
    sim_loss = F.mse_loss(z_a, z_b)
    std_a, std_b = torch.sqrt(z_a.var(dim=0) + eps), torch.sqrt(z_b.var(dim=0) + eps)
    std_loss = F.relu(1 - std_a).mean() + F.relu(1 - std_b).mean()
    z_a, z_b = z_a - z_a.mean(dim=0), z_b - z_b.mean(dim=0)
    cov_a, cov_b = z_a.T @ z_a / (n - 1), z_b.T @ z_b / (n - 1)
    cov_loss = off_diagonal(cov_a).pow(2).sum() / d + off_diagonal(cov_b).pow(2).sum() / d
    return sim_coeff * sim_loss + std_coeff * std_loss + cov_coeff * cov_loss


class VICReg(Objective):
    def forward(self, model, x, ids=None, groups=1):
        z = model(x, groups=groups)
        with torch.autocast(device_type=x.device.type, enabled=False):
            z_a, z_b = (gather_with_grad(v.float()) for v in z.chunk(2))   # the global batch
            return vicreg_loss(z_a, z_b)
