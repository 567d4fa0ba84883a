"""The pytest plugin's machinery: peak meters, the measured-block types and the runner that judges tests."""
