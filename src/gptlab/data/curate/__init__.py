"""Corpus curation the way GPT-3 did it (Appendix A and C): quality classifier and Pareto filter,
MinHash fuzzy deduplication, 13-gram decontamination, weighted mixture into token shards.

Each module holds the algorithm as plain functions; `stages` wraps them as datatrove pipeline
steps and `executor` runs those over file shards, locally or on Ray.
"""
