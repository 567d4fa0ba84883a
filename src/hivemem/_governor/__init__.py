"""The governor: optimize(), govern(), the background monitor, thresholds, pacing, signals, fork."""
