"""Segment heat (paper section 3.3): computed when read, so no decay job is needed."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class HeatParams:
    alpha: float = 1.0
    beta: float = 1.0
    gamma: float = 1.0
    mu: float = 1e7

    @classmethod
    def from_settings(cls, settings: object) -> HeatParams:
        return cls(
            alpha=settings.heat_alpha,  # type: ignore[attr-defined]
            beta=settings.heat_beta,  # type: ignore[attr-defined]
            gamma=settings.heat_gamma,  # type: ignore[attr-defined]
            mu=settings.heat_mu,  # type: ignore[attr-defined]
        )


def recency(last_access: float, now: float, mu: float) -> float:
    """R_recency = exp(-dt / mu); a clock running backwards never gives more than 1."""
    return math.exp(-max(0.0, now - last_access) / mu)


def heat(n_visit: float, l_interaction: float, last_access: float, now: float, params: HeatParams) -> float:
    """Heat = alpha * N_visit + beta * L_interaction + gamma * R_recency."""
    return params.alpha * n_visit + params.beta * l_interaction + params.gamma * recency(last_access, now, params.mu)
