"""Data structures that give memory back on demand: LRU stores (compressed, spilled), pools, lazies, Cache."""
