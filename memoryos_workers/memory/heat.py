"""Segment heat (paper section 3.3), the formula's one home: computed when read, so no decay job is
needed and no stored heat can go stale. The Lua scripts only count what heat is made of (pages, visits,
last access); every reader (eviction, the persona trigger, inspect, export) computes it here."""

from __future__ import annotations

import math
from dataclasses import dataclass

from schemas.settings import Settings


@dataclass(frozen=True)
class HeatParams:
    """The weights, by name, built from Settings in one place (Runtime.segment_stats)."""

    alpha: float = 1.0
    beta: float = 1.0
    gamma: float = 1.0
    mu: float = 1e7

    @classmethod
    def from_settings(cls, settings: Settings) -> HeatParams:
        return cls(alpha=settings.heat_alpha, beta=settings.heat_beta, gamma=settings.heat_gamma, mu=settings.heat_mu)


def recency(last_access: float, now: float, mu: float) -> float:
    """R_recency = exp(-dt / mu); a clock running backwards never gives more than 1."""
    return math.exp(-max(0.0, now - last_access) / mu)


def heat(n_visit: float, l_interaction: float, last_access: float, now: float, params: HeatParams) -> float:
    """Heat = alpha * N_visit + beta * L_interaction + gamma * R_recency."""
    return params.alpha * n_visit + params.beta * l_interaction + params.gamma * recency(last_access, now, params.mu)
