"""Measuring memory: this process, its children, its limits, its allocators, and pressure."""
