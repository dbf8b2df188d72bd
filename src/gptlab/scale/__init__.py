"""Predictable scaling: sweep small models, fit L(C) and L(N, D), predict and plan a bigger run."""
