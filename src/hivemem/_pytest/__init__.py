"""The pytest plugin's machinery: peak meters and the runner that judges tests."""
