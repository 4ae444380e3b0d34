"""The few sparse-matrix operations the solvers need, on torch sparse CSR tensors (any device)."""
from __future__ import annotations

import warnings

import torch


def csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A sparse CSR matrix from its arrays (columns sorted within each row, no duplicates)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, values, size, check_invariants=False)


def for_products(a: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """CSR `a` with values in `dtype` and 32-bit indices, the form the solvers multiply vectors by: torch's
    CSR product with int32 indices is 5x faster on a CPU (MKL's native form; measured on a 19M-entry
    matrix: 13 ms against 69 ms). Matrix products (Galerkin) stay in int64, which is fast there."""
    if a._nnz() >= 2**31 - 1:
        return a.to(dtype)
    return csr(a.crow_indices().int(), a.col_indices().int(), a.values().to(dtype), a.shape)


def rows_of(a: torch.Tensor) -> torch.Tensor:
    """The row index of each stored entry of CSR `a`: (nnz,) int64."""
    crow = a.crow_indices()
    return torch.repeat_interleave(torch.arange(a.shape[0], device=crow.device), crow.diff())


def diagonal_blocks(a: torch.Tensor, b: int) -> torch.Tensor:
    """The b x b blocks on the diagonal of CSR `a` (n b, n b): (n, b, b). b is a power of 2 and every
    diagonal block is stored whole (as Galerkin products and the Laplacian's rows store them), the
    columns in any order within a row (torch's sparse products leave them unsorted)."""
    shift = b.bit_length() - 1  # integer division by b as a shift: 15x faster on int64 here
    row, col = rows_of(a), a.col_indices()
    on = (row >> shift) == (col >> shift)
    order = torch.argsort((row[on] << shift) + (col[on] & (b - 1)))
    return a.values()[on][order].reshape(-1, b, b)


def add_to_diagonal(a: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """CSR `a` (n, n) with `values` (n,) added to its diagonal, in place; every diagonal entry must be
    stored (Galerkin products store them, zeros included). Returns `a`."""
    on = rows_of(a) == a.col_indices()
    if int(on.sum()) != a.shape[0]:
        raise ValueError("the matrix does not store its whole diagonal")
    a.values()[on] += values[a.col_indices()[on]]
    return a
