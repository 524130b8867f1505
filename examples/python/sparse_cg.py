"""Sparse linear algebra in SciPy: conjugate gradients on a 3-D Poisson-like system.

Builds a 7-point-stencil matrix on an ``--n``³ grid (CSR), perturbed by a random diagonal
so it stays positive definite, and solves it with ``scipy.sparse.linalg.cg``: each
iteration streams the matrix (indices and values) once and touches the vectors. Memory
behaviour: streaming sparse matrix-vector products with indirect loads. Deterministic for
a given ``--seed``. Footprint at the defaults: about 150 MiB.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla


def poisson3d(n: int, rng: np.random.Generator) -> sp.csr_matrix:
    one = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n), format="csr")
    eye = sp.identity(n, format="csr")
    a = (
        sp.kron(sp.kron(one, eye), eye)
        + sp.kron(sp.kron(eye, one), eye)
        + sp.kron(eye, sp.kron(eye, one))
    ).tocsr()
    a = a + sp.diags(rng.random(a.shape[0]) * 0.1, format="csr")
    return a.tocsr()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=80, help="grid points per side")
    p.add_argument("--iters", type=int, default=150)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    a = poisson3d(args.n, rng)
    b = rng.random(a.shape[0])
    x, info = spla.cg(a, b, maxiter=args.iters, rtol=1e-10)
    resid = float(np.linalg.norm(a @ x - b) / np.linalg.norm(b))
    print(
        f"sparse_cg: unknowns={a.shape[0]} nnz={a.nnz} info={info} residual={resid:.3e} "
        f"checksum={float(x.sum()):.6e} time_s={time.perf_counter() - t0:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
