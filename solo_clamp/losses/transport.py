"""Block-diagonal transport operators: learned Lie group actions on a feature space.

Reference: Fallah, Helbling, Johnsen, Rozell, "Manifold Contrastive Learning with Variational
Lie Group Operators", TMLR 2024 (official code: github.com/kfallah/manifold-contrastive).

A dictionary of ``M`` generators ``Ψ_m`` acts on features ``z`` of dimension ``d``. Each
generator is block-diagonal with ``S = d / k`` blocks of size ``k``; all blocks share one
coefficient vector ``c ∈ R^M``, so block ``s`` of ``z`` moves by

    T_s(c) = expm(Σ_m c_m Ψ_{m, s}),        T(c) z = [T_1(c) z_1, ..., T_S(c) z_S].

``T(0) = I`` and ``T(c) T(−c) = I``: the operators form a Lie group. The matrix exponential is
evaluated in float32 with autocast off (torch has no half-precision ``matrix_exp``).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn


class TransportOperators(nn.Module):
    """A dictionary ``psi`` of ``M`` block-diagonal generators of shape ``[M, S, k, k]``.

    Initialised as the official code does ("stable" init): every generator block is
    ``r·I + ω·J`` with ``J`` the block-diagonal of 2x2 rotations ``[[0, −1], [1, 0]]``, one
    ``(r, ω)`` per generator and block, ``r ~ U(−½, ½)·real_range`` (a slow growth or decay)
    and ``ω ~ U(−½, ½)·imag_range`` (a rotation frequency).

    Args:
        feature_dim: ``d``, the dimension of the features the operators act on.
        dictionary_size: ``M``, the number of generators (length of a coefficient vector).
        block_dim: ``k``, the size of one diagonal block; must divide ``d`` and be even.
        real_range: width of the uniform initialisation of the real parts.
        imag_range: width of the uniform initialisation of the rotation frequencies.
        init: ``"rotation"`` (the official "stable" init above, its paper configs' choice) or
            ``"random"`` (the official code's other init: Gaussian entries of std ``1/k``).

    Raises:
        ValueError: for sizes that do not fit together.

    Examples:
        >>> operators = TransportOperators(feature_dim=512, dictionary_size=32, block_dim=64)
        >>> z0 = torch.randn(8, 512)
        >>> c = 0.05 * torch.randn(8, 32)
        >>> z1_hat = operators(z0, c)  # [8, 512]
    """

    def __init__(
        self,
        feature_dim: int,
        dictionary_size: int,
        block_dim: int,
        real_range: float = 1e-4,
        imag_range: float = 6.0,
        init: str = "rotation",
    ) -> None:
        super().__init__()
        if init not in OPERATOR_INITS:
            raise ValueError(f"init must be one of {list(OPERATOR_INITS)}, got {init!r}.")
        for name, value in (
            ("feature_dim", feature_dim),
            ("dictionary_size", dictionary_size),
            ("block_dim", block_dim),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if block_dim % 2:
            raise ValueError(
                f"block_dim must be even (the generators start as 2x2 rotations), got {block_dim}."
            )
        if feature_dim % block_dim:
            raise ValueError(
                f"block_dim={block_dim} must divide feature_dim={feature_dim} (the operators "
                "are block-diagonal)."
            )
        for name, value in (("real_range", real_range), ("imag_range", imag_range)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")
        self.feature_dim = feature_dim
        self.dictionary_size = dictionary_size
        self.block_dim = block_dim
        self.num_blocks = feature_dim // block_dim
        if init == "rotation":
            psi = rotation_generators(
                dictionary_size, self.num_blocks, block_dim, real_range, imag_range
            )
        else:
            psi = random_generators(dictionary_size, self.num_blocks, block_dim)
        self.psi = nn.Parameter(psi)

    def matrices(self, c: torch.Tensor, detach_operators: bool = False) -> torch.Tensor:
        """The blocks ``T_s(c)`` for a batch of coefficients.

        Args:
            c: ``[..., M]`` coefficients.
            detach_operators: no gradient to ``psi`` (used when only ``c`` is being chosen).

        Returns:
            ``[..., S, k, k]`` float32 matrices.
        """
        if c.shape[-1] != self.dictionary_size:
            raise ValueError(
                f"c must have dictionary_size={self.dictionary_size} coefficients in its last "
                f"dimension, got shape {tuple(c.shape)}."
            )
        psi = self.psi.detach() if detach_operators else self.psi
        with torch.autocast(device_type=c.device.type, enabled=False):
            generator = torch.einsum("...m,mskl->...skl", c.float(), psi.float())
            return torch.linalg.matrix_exp(generator)

    def forward(
        self, z: torch.Tensor, c: torch.Tensor, detach_operators: bool = False
    ) -> torch.Tensor:
        """Applies ``T(c)`` to ``z``.

        Args:
            z: ``[..., d]`` features.
            c: ``[..., M]`` coefficients; leading dimensions broadcast against ``z``'s (e.g.
                ``[J, B, M]`` samples for ``[B, d]`` features).
            detach_operators: no gradient to ``psi``.

        Returns:
            ``[..., d]`` float32 transported features.
        """
        if z.shape[-1] != self.feature_dim:
            raise ValueError(
                f"z must have feature_dim={self.feature_dim} in its last dimension, got shape "
                f"{tuple(z.shape)}."
            )
        transport = self.matrices(c, detach_operators)
        with torch.autocast(device_type=z.device.type, enabled=False):
            blocks = z.float().reshape(*z.shape[:-1], self.num_blocks, self.block_dim, 1)
            moved = transport @ blocks
        return moved.reshape(*moved.shape[:-3], self.feature_dim)


OPERATOR_INITS = ("rotation", "random")


def random_generators(
    dictionary_size: int, num_blocks: int, block_dim: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The official code's non-"stable" initialisation: ``[M, S, k, k]`` Gaussian entries of
    standard deviation ``1/k`` (``torch.randn(...) * var / N`` with ``var = 1``)."""
    shape = (dictionary_size, num_blocks, block_dim, block_dim)
    return torch.randn(shape, generator=generator) / block_dim


def rotation_generators(
    dictionary_size: int,
    num_blocks: int,
    block_dim: int,
    real_range: float = 1e-4,
    imag_range: float = 6.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The official initialisation of ``psi``: ``[M, S, k, k]`` blocks ``r·I + ω·J``.

    Every 2x2 diagonal sub-block of generator ``m``, block ``s`` is ``[[r, −ω], [ω, r]]`` with
    one ``r ~ U(−½, ½)·real_range`` and one ``ω ~ U(−½, ½)·imag_range`` per ``(m, s)``.
    """
    shape = (dictionary_size, num_blocks)
    real = (torch.rand(shape, generator=generator) - 0.5) * real_range
    imag = (torch.rand(shape, generator=generator) - 0.5) * imag_range
    psi = torch.zeros(dictionary_size, num_blocks, block_dim, block_dim)
    even = torch.arange(0, block_dim, 2)
    psi[..., even, even] = real[..., None]
    psi[..., even + 1, even + 1] = real[..., None]
    psi[..., even + 1, even] = imag[..., None]
    psi[..., even, even + 1] = -imag[..., None]
    return psi
