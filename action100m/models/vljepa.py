"""VL-JEPA as a LightningModule: X-encoder → predictor (with a text query) → shared space ← Y-encoder.

The interface evaluation uses: `num_frames`, `crop_size`, `preprocess` (uint8 frames → a clip),
`embed_video` (clips → normalised predicted embeddings, with the config's default query) and
`embed_text` (texts → normalised Y-encoder embeddings).
"""

from __future__ import annotations

import os
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from action100m.errors import ConfigError
from action100m.models.checkpoint import CHECKPOINT_KEY, CHECKPOINT_VERSION, check_compatible, read_checkpoint
from action100m.models.config import ModelConfig, as_plain, model_config
from action100m.models.loss import InfoNCE
from action100m.models.optim import OptimConfig, build_optimizer, param_groups
from action100m.models.predictor import Predictor
from action100m.models.x_encoder import XEncoder
from action100m.models.y_encoder import YEncoder
from action100m.video.transforms import preprocess_clip


class VLJEPA(L.LightningModule):
    def __init__(self, model: ModelConfig | dict[str, Any], optim: OptimConfig | None = None):
        super().__init__()
        self.cfg = model_config(model)
        self.optim_cfg = optim or OptimConfig()
        self.num_frames: int = self.cfg.num_frames
        self.crop_size: int = self.cfg.crop_size
        self.query: str = self.cfg.query
        self.x_encoder = XEncoder(self.cfg.x_encoder, crop_size=self.crop_size)
        self.predictor = Predictor(self.cfg.predictor, self.x_encoder.width, self.cfg.embed_dim)
        self.y_encoder = YEncoder(self.cfg.y_encoder, self.cfg.embed_dim)
        self.loss = InfoNCE(self.cfg.loss)
        # Progress that a resumed run continues from; saved in checkpoints. Both count over all ranks,
        # so that the one checkpoint (rank 0's) restores every rank.
        self.samples_seen = 0
        self.skipped_samples = 0
        # The config values that define the run (training.run_identity): a checkpoint resumes only its run.
        self.identity: dict[str, Any] = {}
        self.run_id: str | None = None  # the W&B run, so that a resumed run logs into the same one
        # What it was trained on (data scale, dataset size, seed): evaluations record it, so a scaling
        # report needs nothing but the result files.
        self.training_data: dict[str, Any] = {}

    # -- the evaluation interface ---------------------------------------------------------------

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (T, H, W, 3) → float (T, 3, crop, crop): short side resized, centre-cropped, normalised."""
        return preprocess_clip(frames, self.crop_size)

    @torch.no_grad()
    def embed_video(self, clips: torch.Tensor, queries: list[str] | None = None) -> torch.Tensor:
        """(B, T, 3, H, W) → (B, D), L2-normalised predictions (default query: the config's)."""
        return F.normalize(self.predict(clips.to(self.device), queries), dim=-1)

    @torch.no_grad()
    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """Texts → (B, D), L2-normalised Y-encoder embeddings."""
        return F.normalize(self.y_encoder(list(texts)), dim=-1)

    # -- forward --------------------------------------------------------------------------------

    def predict(self, clips: torch.Tensor, queries: list[str] | None = None) -> torch.Tensor:
        query_ids, query_mask = self.predictor.tokenize(
            queries or [self.query] * clips.shape[0], clips.device
        )
        return self.predictor(self.x_encoder(clips), query_ids, query_mask)

    def _step(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, to_text = self.loss(self.predict(batch["clips"]), self.y_encoder(batch["texts"]))
        rows = to_text.shape[0]
        offset = (torch.distributed.get_rank() * rows) if self.trainer.world_size > 1 else 0
        labels = torch.arange(rows, device=to_text.device) + offset
        top1 = (to_text.argmax(dim=1) == labels).float().mean()
        return loss, {"loss": loss, "video_to_text_top1": top1}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss, metrics = self._step(batch)
        batch_size = len(batch["texts"])
        self.samples_seen += batch_size * self.trainer.world_size
        self.add_skipped(int(batch["skipped"]))
        # Few log calls: each costs Lightning about a millisecond, every step.
        metrics.update(
            temperature=self.loss.temperature,
            samples_seen=float(self.samples_seen),
            skipped_samples=float(self.skipped_samples),
        )
        self.log_dict({f"train/{k}": v for k, v in metrics.items()}, batch_size=batch_size, prog_bar=True)
        return loss

    def add_skipped(self, count: int) -> None:
        """Add this rank's skipped samples of one step, summed over the ranks (every rank calls it):
        the count is the run's total on every rank, like samples_seen, so the checkpoint that rank 0
        writes restores every rank to it. One scalar all-reduce a step, as logging it with sync_dist did."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            total = torch.tensor(count, device=self.device)
            torch.distributed.all_reduce(total)
            count = int(total.item())
        self.skipped_samples += count

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        _, metrics = self._step(batch)
        self.log_dict(
            {f"val/{k}": v for k, v in metrics.items()}, batch_size=len(batch["texts"]), sync_dist=True
        )

    # -- optimisation ---------------------------------------------------------------------------

    def configure_optimizers(self) -> dict:
        cfg = self.cfg
        parts = [
            ("predictor", self.predictor, 1.0),
            ("y_head", self.y_encoder.head, 1.0),
            ("y_encoder", self.y_encoder.encoder, cfg.y_encoder.lr_mult),
            ("x_encoder", self.x_encoder, cfg.x_encoder.lr_mult),
            ("temperature", self.loss, 1.0),
        ]
        max_steps = self.trainer.max_steps if self._trainer is not None else -1
        return build_optimizer(param_groups(parts, self.optim_cfg), self.optim_cfg, max_steps)

    # -- checkpoints ----------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = {
            "version": CHECKPOINT_VERSION,
            "model": as_plain(self.cfg),
            "samples_seen": self.samples_seen,
            "skipped_samples": self.skipped_samples,
            "wandb_run_id": self.run_id,
            "train": self.training_data,
            "identity": self.identity,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = check_compatible(checkpoint, self, "checkpoint")
        self.samples_seen = meta["samples_seen"]
        self.skipped_samples = meta["skipped_samples"]
        self.run_id = meta["wandb_run_id"]
        self.training_data = dict(meta.get("train", {}))
        self.identity = dict(meta.get("identity", {}))  # empty in checkpoints saved before it was recorded

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> VLJEPA:
        """The model of a training checkpoint, in eval mode on `map_location`, rebuilt from the model
        config stored in it."""
        checkpoint = read_checkpoint(path, map_location)
        meta = checkpoint.get(CHECKPOINT_KEY)
        if not isinstance(meta, dict) or "model" not in meta:
            raise ConfigError(
                f"checkpoint {path}: not an action100m VL-JEPA checkpoint (no '{CHECKPOINT_KEY}' entry)"
            )
        model = cls(meta["model"])
        check_compatible(checkpoint, model, f"checkpoint {path}")
        model.load_state_dict(checkpoint["state_dict"])
        model.samples_seen, model.skipped_samples = meta["samples_seen"], meta["skipped_samples"]
        model.training_data = dict(meta.get("train", {}))  # empty in checkpoints saved before it was recorded
        model.identity = dict(meta.get("identity", {}))  # likewise
        return model.to(map_location).eval()
