"""Models: V-JEPA 2 encoders by name (vjepa2.py) and VL-JEPA (vljepa.py, loaded by `load_checkpoint`)."""

from action100m.models.checkpoint import load_checkpoint

__all__ = ["load_checkpoint"]
