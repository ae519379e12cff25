"""Zero-shot scoring: template-averaged class-text embeddings (cached per model + templates) against
clip embeddings, views averaged, by cosine similarity."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from action100m.eval.data import ClipDataset, Sample, collate
from action100m.eval.encoders import VideoTextEncoder, encoder_device
from action100m.eval.prompts import prompt_texts
from action100m.utils.atomic import atomic_path


def text_embeddings(encoder: VideoTextEncoder, texts: list[str], batch_size: int) -> torch.Tensor:
    """(len(texts), D) float32 on the CPU, `batch_size` texts per Y-encoder call."""
    chunks = [encoder.embed_text(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
    return F.normalize(torch.cat(chunks).float().cpu(), dim=-1)


def class_embeddings(
    encoder: VideoTextEncoder,
    class_texts: list[str],
    templates: list[str],
    batch_size: int = 256,
    cache_dir: Path | None = None,
    model_key: str = "",
) -> tuple[torch.Tensor, dict[str, Any]]:
    """(classes, D): each class's prompts embedded and normalised, averaged over the templates (prompt
    ensembling, as CLIP does), normalised again. With `cache_dir`, reused for the same model key
    (checkpoint hash), templates and class texts; the second value says whether it was and how many
    texts went through the Y-encoder."""
    key = hashlib.sha256(json.dumps([model_key, templates, class_texts]).encode()).hexdigest()[:24]
    cached = cache_dir / f"text-{key}.pt" if cache_dir is not None and model_key else None
    if cached is not None and cached.is_file():
        embeddings = torch.load(cached, weights_only=True)
        return embeddings, {"cache": str(cached), "cache_hit": True, "texts_encoded": 0}
    prompts = prompt_texts(class_texts, templates)
    per_prompt = text_embeddings(encoder, prompts, batch_size).view(len(class_texts), len(templates), -1)
    embeddings = F.normalize(per_prompt.mean(dim=1), dim=-1)
    if cached is not None:
        with atomic_path(cached) as tmp:
            torch.save(embeddings, tmp)
    info = {
        "cache": None if cached is None else str(cached),
        "cache_hit": False,
        "texts_encoded": len(prompts),
    }
    return embeddings, info


@dataclass
class ClipEmbeddings:
    embeddings: torch.Tensor  # (evaluated clips, D), in `indices` order
    indices: list[int]  # positions in the dataset of the clips embedded
    failures: list[tuple[int, str]] = field(default_factory=list)  # (position, reason)


@torch.inference_mode()
def clip_embeddings(
    encoder: VideoTextEncoder,
    dataset: ClipDataset,
    batch_size: int = 8,
    workers: int = 2,
    progress: bool = True,
    desc: str = "eval",
    query: str | None = None,
    decoded: list[Sample] | None = None,
) -> ClipEmbeddings:
    """Every clip's embedding, its views (temporal x spatial) averaged; workers decode in parallel.
    `query`: the predictor's text query for every clip (VL-JEPA), else the encoder's own. `decoded`
    keeps the decoded samples: an empty list is filled, a filled one is embedded without decoding."""
    if decoded:
        batches: Iterable[list[Sample]] = (
            decoded[i : i + batch_size] for i in range(0, len(decoded), batch_size)
        )
    else:
        batches = DataLoader(
            dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate, shuffle=False
        )
        if decoded is not None:
            batches = _kept(batches, decoded)
    device = encoder_device(encoder)
    chunks, indices, failures = [], [], []
    with tqdm(total=len(dataset), desc=desc, unit="clip", disable=not progress, file=sys.stderr) as bar:
        for batch in batches:
            failures += [(s.index, s.error or "") for s in batch if s.views is None]
            ok = [s for s in batch if s.views is not None]
            if ok:
                views = torch.stack([s.views for s in ok])  # (B, V, T, 3, h, w)
                clips = views.flatten(0, 1).to(device)
                queries = {"queries": [query] * len(clips)} if query else {}
                flat = encoder.embed_video(clips, **queries).float().cpu()
                chunks.append(F.normalize(flat.view(len(ok), views.shape[1], -1).mean(dim=1), dim=-1))
                indices += [s.index for s in ok]
            bar.update(len(batch))
            bar.set_postfix(failed=len(failures))
    embeddings = torch.cat(chunks) if chunks else torch.empty(0, 0)
    return ClipEmbeddings(embeddings, indices, failures)


def _kept(batches: Iterable[list[Sample]], kept: list[Sample]) -> Iterator[list[Sample]]:
    for batch in batches:
        kept.extend(batch)
        yield batch
