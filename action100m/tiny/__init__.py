"""Tiny random-init stand-ins of the paper's models that users run: `model=tiny`, `build=tiny`, the demo.

Nothing is downloaded: each is built from a config of the real model's class.
"""
