"""The memory context a retrieval returns, and its prompt: the model (`RetrievedContext`, `RetrievedPage`),
rendering (render.py) and fitting to a token budget (fit.py). Producers and workers both use it: a
degraded answer is fitted on the caller's side, a full one on the worker's."""

from producers.context.fit import DEFAULT_PACKING, PackingParams
from producers.context.model import RetrievedContext
from producers.context.parts import Parts, RetrievedPage

__all__ = ["DEFAULT_PACKING", "PackingParams", "Parts", "RetrievedContext", "RetrievedPage"]
