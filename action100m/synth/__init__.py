"""SynthActions: a procedural world of instructional videos with exact ground truth.

No model weights or datasets can be downloaded here, so this world is what every stage is measured
against on a CPU: segmentation boundaries, caption plumbing, zero-shot accuracy, data scaling.
`action100m synth` (generate.py) writes a dataset; world.py says what can happen in it.
"""

from action100m.synth.describer import DESCRIBER_ID, GroundTruthDescriber
from action100m.synth.generate import SynthError, generate_dataset
from action100m.synth.scoring import boundary_prf, mean_iou, truth_boundaries, truth_segments

__all__ = [
    "DESCRIBER_ID",
    "GroundTruthDescriber",
    "SynthError",
    "boundary_prf",
    "generate_dataset",
    "mean_iou",
    "truth_boundaries",
    "truth_segments",
]
