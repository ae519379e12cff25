"""Zero-shot evaluation on the standard action benchmarks (`python eval.py`, configs/eval.yaml).

Benchmark readers (benchmarks/, one module per benchmark) turn official annotation files into clips and
class names; prompts.py turns class names into template-averaged texts; encoders.py puts VL-JEPA and
CLIP-style baselines behind one interface; classifier.py and metrics.py score; run.py ties it together.
"""

from action100m.eval.benchmarks import READERS, Benchmark, Clip, RetrievalSet, Source, read_benchmark
from action100m.eval.classifier import class_embeddings, clip_embeddings
from action100m.eval.config import BenchmarkConfig, EncoderConfig, EvalConfig, register_eval_configs
from action100m.eval.encoders import CLIPEncoder, VideoTextEncoder, load_encoder
from action100m.eval.errors import BenchmarkFileError, EvalError
from action100m.eval.metrics import classification_metrics, retrieval_metrics
from action100m.eval.run import load_benchmark, run_eval

__all__ = [
    "READERS",
    "Benchmark",
    "BenchmarkConfig",
    "BenchmarkFileError",
    "CLIPEncoder",
    "Clip",
    "EncoderConfig",
    "EvalConfig",
    "EvalError",
    "RetrievalSet",
    "Source",
    "VideoTextEncoder",
    "class_embeddings",
    "classification_metrics",
    "clip_embeddings",
    "load_benchmark",
    "load_encoder",
    "read_benchmark",
    "register_eval_configs",
    "retrieval_metrics",
    "run_eval",
]
