"""An exact dual-cone projector for torchjd's UPGrad and DualProj, by enumerating supports.

torchjd's own projector needs the optional quadprog package; this one solves the same problem,
``v = argmin_{v >= u} vᵀ A v`` with ``A = G / tr G + reg_eps I`` (torchjd's normalisation and
ridge, restated), by trying every set of bounds that hold with equality: the optimum is the
least objective among the feasible candidates. Exponential in T, exact, float64 numpy.
"""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor
from torchjd.linalg import DualConeProjector, PSDMatrix

FloatArray = npt.NDArray[np.float64]

KINDS = ("random", "opposite", "duplicate", "rank1", "zero_row", "conflicting")


def jacobian(kind: str, num_tasks: int, dim: int, seed: int) -> Tensor:
    """``[T, P]`` float64 task gradients of ``kind``, norms spread over 10^±1."""
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((num_tasks, dim)) * 10.0 ** rng.uniform(-1, 1, (num_tasks, 1))
    if kind == "opposite":
        g[1] = -g[0]
    elif kind == "duplicate":
        g[1] = g[0]
    elif kind == "rank1":
        g = np.outer(rng.choice([-1.0, 1.0], num_tasks) * rng.uniform(0.1, 3, num_tasks), g[0])
    elif kind == "zero_row":
        g[-1] = 0.0
    elif kind == "conflicting":
        g[1:] -= 2.0 * g[0]
    return torch.tensor(g)


def enumerate_bounded_qp(a: FloatArray, u: FloatArray) -> FloatArray:
    """``argmin_{v >= u} vᵀ a v`` for one positive definite ``a [T, T]`` and ``u [T]``."""
    t = a.shape[0]
    best, best_v = np.inf, u.copy()
    for size in range(t + 1):
        for free in itertools.combinations(range(t), size):
            fixed = [i for i in range(t) if i not in free]
            v = u.copy()
            if free:
                f = list(free)
                v[f] = np.linalg.solve(a[np.ix_(f, f)], -a[np.ix_(f, fixed)] @ u[fixed])
            if np.all(v >= u - 1e-12):
                value = float(v @ a @ v)
                if value < best:
                    best, best_v = value, v
    return best_v


class EnumerationProjector(DualConeProjector):
    """torchjd's `DualConeProjector` contract, solved exactly (trace >= 1e-4 assumed)."""

    def __init__(self, reg_eps: float = 1e-4) -> None:
        self.reg_eps = reg_eps

    def __call__(self, U: Tensor, G: PSDMatrix) -> Tensor:
        g = G.detach().double().numpy()
        assert np.trace(g) >= 1e-4, "torchjd would zero this Gram matrix; keep inputs larger"
        a = g / np.trace(g) + self.reg_eps * np.eye(g.shape[0])
        u = U.detach().double().numpy()
        flat = u.reshape(-1, g.shape[0])
        out = np.stack([enumerate_bounded_qp(a, row) for row in flat]).reshape(u.shape)
        return torch.as_tensor(out, dtype=G.dtype)
