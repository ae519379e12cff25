"""Models: V-JEPA 2 encoders by name (vjepa2.py) and VL-JEPA (vljepa.py; `VLJEPA.from_checkpoint` loads one)."""
