"""Sharded objectives (lsq, logreg, quadratic) and the data they are built from."""

from .base import Problem

__all__ = ["Problem"]
