"""What strategies reclaim from: registered caches and containers, compaction, dedup, unloading, gc."""
