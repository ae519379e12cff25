"""The run of one build worker: `run_build` reads the input, checks it against the previous run's
and the hub files it needs against the cache, asks each backend one real request (the canary,
data_build/canary.py), and builds this partition's shards that are not done, each through `Builder`
(open the videos, segment, caption, refine, write the samples) a batch of videos at a time, every
stage's output read from or written to its per-video cache. The stages run in threads of their own,
pipelined over the batches (data_build/pipeline.py), so segmentation goes on while the servers
answer. A shard with retryable backend failures (its server down, overloaded or too slow) is not
written: `run_build` raises `PendingFailures` naming the servers and counts, the entrypoint exits with
`RETRY_EXIT`, and a rerun requests exactly what failed. Content failures are recorded in the shard's
failures, which is then done, unless one kind of them passes the failure-rate guard's share of a
batch (data_build/guard.py): then the build stops and the rerun asks for them again.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from tqdm import tqdm

from action100m.backends import build_backend
from action100m.dataset.schema import VIDEO_UID_PATTERN, Node, Provenance, VideoRecord, validate_video_uid
from action100m.dataset.shards import ShardSet
from action100m.errors import Action100MError, ConfigError, StageError
from action100m.utils.atomic import write_bytes_atomic, write_json_atomic, write_text_atomic
from action100m.video import VideoError, open_readable
from action100m.video.reencode import reencode
from data_build.cache import check_previous, read_cached, shard_skipped, stage_hashes
from data_build.canary import CanaryFailed, check_captioners, check_llm
from data_build.caption import Redo, caption_records, caption_synthetic
from data_build.config import STAGES, BuildConfig
from data_build.guard import FIELD_ROLES, LLM_ROLE, FailureRateExceeded, check_failure_rate
from data_build.inputs import Entry, assign_shards, read_input
from data_build.pipeline import run_stages
from data_build.refine import Mode, refine_records, reopen_nodes
from data_build.segment import build_extractor, score_tree, segment_videos

RETRY_EXIT = 3  # retryable backend failures: rerun the same command once the servers are back


class PendingFailures(Action100MError):
    """Shards left undone by retryable backend failures; a rerun finishes them."""


def retryable(failure: StageError) -> bool:
    """Whether a failure is the backend's, not the content's: a rerun requests it again."""
    return bool(getattr(failure, "retryable", False))


@dataclass
class _Batch:
    """One batch of a shard's videos on its way through the stages; it owns the videos it opened."""

    entries: list[Entry]
    failures: list[StageError] = field(default_factory=list)
    opened: list[Any] = field(default_factory=list)  # every source opened, closed once written
    pairs: list[tuple[VideoRecord, Any]] = field(default_factory=list)  # the segmented videos
    samples: list[tuple[str, dict[str, bytes]]] = field(default_factory=list)

    def close(self) -> None:
        for source in self.opened:
            source.close()
        self.opened, self.pairs = [], []


class Builder:
    """One worker's shards: the stages over a batch of videos, each stage's output cached per video."""

    def __init__(self, cfg: BuildConfig, out: Path, hashes: dict[str, str]) -> None:
        self.cfg, self.out, self.hashes = cfg, out, hashes
        self.work = out / "work"
        self.backends: dict[str, Any] = {}
        self.seconds = dict.fromkeys((*STAGES, "write"), 0.0)
        self.scores: dict[str, dict[str, float]] = {}
        self._truth: dict[str, dict] | None = None
        self._extractor: Any = None  # segmentation's features model (V-JEPA 2), once needed

    def truth_path(self) -> Path:
        return Path(self.cfg.ground_truth or Path(self.cfg.input).parent / "ground_truth.jsonl")

    def truth(self) -> dict[str, dict]:
        """SynthActions ground truth by video, when the input has it (else empty)."""
        if self._truth is None:
            path = self.truth_path()
            lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
            self._truth = {item["video_uid"]: item for item in map(json.loads, filter(None, lines))}
        return self._truth

    def _cache(self, uid: str, stage: str) -> Path:
        return self.work / "videos" / uid / f"{stage}-{self.hashes[stage]}.json"

    def _cached(self, uid: str, stage: str) -> dict | None:
        return read_cached(self._cache(uid, stage), self.cfg.retry_failed)

    def _backend(self, role: str, backend_cfg: Any) -> Any:
        if role not in self.backends:
            if backend_cfg is None:
                raise ConfigError(f"{role}: no backend configured (set it, or choose a build preset)")
            self.backends[role] = build_backend(backend_cfg)
        return self.backends[role]

    def open_sources(self, entries: list[Entry], failures: list[StageError]) -> list[tuple[Entry, Any]]:
        """Usable (entry, source) pairs; the rest become failures of stage "input"."""
        usable = []
        for entry in entries:
            uid = str(entry.video_uid)
            try:
                validate_video_uid(entry.video_uid)
                if entry.duplicate:
                    raise Action100MError(f"duplicate video_uid {uid}; the first one is kept")
                video = self.cfg.video
                source = open_readable(
                    entry.path, video.backend.value, uid, video.fallback, **video.decoder_options()
                )
                info = source.info
                if not 0 < info.fps <= self.cfg.max_fps:
                    raise Action100MError(f"frame rate {info.fps:g} outside (0, {self.cfg.max_fps:g}]")
                if info.width * info.height > self.cfg.max_pixels:
                    raise Action100MError(
                        f"{info.width}x{info.height} is over max_pixels {self.cfg.max_pixels}"
                    )
                usable.append((entry, source))
            except (Action100MError, OSError) as err:
                failures.append(StageError(uid, "input", str(err)))
        return usable

    def segment(
        self, pairs: list[tuple[Entry, Any]], failures: list[StageError]
    ) -> list[tuple[VideoRecord, Any]]:
        start = time.perf_counter()
        trees: dict[str, list[dict]] = {}
        todo = []
        for entry, source in pairs:
            uid = str(entry.video_uid)
            if entry.record is not None:
                trees[uid] = [node.to_dict() for node in entry.record.nodes]
            elif (cached := self._cached(uid, "segment")) is not None:
                trees[uid] = cached.get("nodes")
                if cached.get("failure"):
                    failures.append(StageError(uid, "segment", cached["failure"]))
                if cached.get("score"):
                    self.scores[uid] = cached["score"]
            else:
                todo.append((uid, source))
        if todo and self._extractor is None:  # loaded once per worker, not for every batch
            self._extractor = build_extractor(self.cfg.segment)
        results = segment_videos(todo, self.cfg.segment, self._extractor) if todo else []
        for (uid, _), result in zip(todo, results, strict=True):
            if isinstance(result, StageError):
                failures.append(result)
                write_json_atomic(self._cache(uid, "segment"), {"failure": result.reason})
                trees[uid] = None
            else:
                trees[uid] = [node.to_dict() for node in result.nodes]
                truth = self.truth().get(uid)
                if truth is not None:  # SynthActions: how the tree's boundaries match the true steps
                    self.scores[uid] = score_tree(result, truth)
                write_json_atomic(
                    self._cache(uid, "segment"), {"nodes": trees[uid], "score": self.scores.get(uid)}
                )
        self.seconds["segment"] += time.perf_counter() - start
        records = []
        for entry, source in pairs:
            nodes = trees[str(entry.video_uid)]
            if nodes is None:
                continue  # a failed video never reaches a shard
            metadata = {**entry.metadata}
            metadata.setdefault("duration", round(source.info.duration, 3))
            records.append(
                (
                    VideoRecord(
                        str(entry.video_uid),
                        metadata,
                        [Node.from_dict(n, "cache") for n in nodes],
                        # which backend read it, so the videos that needed the fallback can be found
                        Provenance(extra={"video": {"backend": source.backend}}),
                    ),
                    source,
                )
            )
        return records

    def caption(self, pairs: list[tuple[VideoRecord, Any]], failures: list[StageError]) -> None:
        start = time.perf_counter()
        fields = ("frame_caption", "segment_caption", "action_label")
        todo, redo, kept = [], {}, {}
        for record, source in pairs:
            cached = self._cached(record.video_uid, "caption")
            if cached is None:
                todo.append((record, source))
                continue
            for node in record.nodes:
                for name, value in zip(fields, cached["nodes"].get(node.node_id, [None] * 3), strict=True):
                    setattr(node, name, value)
            record.provenance = Provenance.from_dict(cached["provenance"])
            # What failed for the backend's sake is asked again; what failed for its content stays failed.
            pending = {(f["node_id"], f["field"]) for f in cached["failures"] if f.get("retryable")}
            kept[record.video_uid] = [f for f in cached["failures"] if not f.get("retryable")]
            failures.extend(
                StageError(record.video_uid, "caption", f["reason"], f["node_id"])
                for f in kept[record.video_uid]
            )
            if pending:
                redo[record.video_uid] = pending
                todo.append((record, source))
        tripped = None
        if todo:
            result = self._run_caption(todo, redo)
            tripped = self._guard(
                result.failures,
                {
                    FIELD_ROLES["frame_caption"]: result.image_requests,
                    FIELD_ROLES["segment_caption"]: result.video_requests,
                },
                {
                    id(f): FIELD_ROLES[f.field_name]
                    for f in result.failures
                    if getattr(f, "field_name", None) in FIELD_ROLES
                },
            )
            failures.extend(result.failures)
            for record, _ in todo:
                mine = kept.get(record.video_uid, []) + [
                    {
                        "node_id": f.node_id,
                        "reason": f.reason,
                        "field": getattr(f, "field_name", None),
                        "retryable": retryable(f),
                        "server": getattr(f, "server", None),
                    }
                    for f in result.failures
                    if f.video_uid == record.video_uid
                ]
                write_json_atomic(
                    self._cache(record.video_uid, "caption"),
                    {
                        "nodes": {n.node_id: [getattr(n, name) for name in fields] for n in record.nodes},
                        "provenance": record.provenance.to_dict(),
                        "failures": mine,
                        "failure": bool(mine),
                    },
                )
        self.seconds["caption"] += time.perf_counter() - start
        if tripped is not None:  # its failures were cached as retryable: the rerun asks for them again
            raise tripped

    def _run_caption(self, todo: list[tuple[VideoRecord, Any]], redo: Redo) -> Any:
        cfg = self.cfg.caption
        if cfg.mode == "synthetic":
            from action100m.synth.describer import DESCRIBER_ID, GroundTruthDescriber

            if "describer" not in self.backends:
                truth = self.truth_path()
                if not truth.is_file():
                    raise ConfigError(
                        f"ground_truth: {truth} not found (caption.mode=synthetic needs SynthActions truth)"
                    )
                self.backends["describer"] = GroundTruthDescriber.from_jsonl(truth)
            return caption_synthetic([r for r, _ in todo], self.backends["describer"].describe, DESCRIBER_ID)
        frame = self._backend("caption.frame_captioner", cfg.frame_captioner)
        segment = self._backend("caption.segment_captioner", cfg.segment_captioner)
        return caption_records(todo, cfg, frame, segment, redo)

    def canary(self, entries: list[Entry]) -> None:
        """Each configured backend answers one real request, on the first readable video of `entries`,
        before any video is processed (data_build/canary.py); `CanaryFailed` if one does not."""
        roles = self._roles()
        if not roles:
            return
        for entry in entries:
            for _, source in self.open_sources([entry], []):
                uid = str(entry.video_uid)
                try:
                    captions: dict[str, str] | None = {}
                    if "caption.frame_captioner" in roles:
                        frame = self._backend("caption.frame_captioner", roles["caption.frame_captioner"])
                        segment = self._backend(
                            "caption.segment_captioner", roles["caption.segment_captioner"]
                        )
                        captions = check_captioners(uid, source, self.cfg.caption, frame, segment)
                    if captions is None:
                        continue
                    if "refine.llm" in roles:
                        backend = self._backend("refine.llm", roles["refine.llm"])
                        check_llm(uid, source.info.duration, self.cfg.refine, backend, captions)
                    return
                finally:
                    source.close()
        # No readable video in this shard: nothing to ask with; the build records each video's failure.

    def _roles(self) -> dict[str, Any]:
        """The backend configs this build's stages call, by config key (None where one is missing)."""
        caption, refine = self.cfg.caption, self.cfg.refine
        roles = {}
        if caption.mode == "models":
            roles["caption.frame_captioner"] = caption.frame_captioner
            roles["caption.segment_captioner"] = caption.segment_captioner
        if Mode(refine.mode) == Mode.llm:
            roles["refine.llm"] = refine.llm
        return roles

    def refine(self, records: list[VideoRecord], failures: list[StageError]) -> None:
        start = time.perf_counter()
        llm = None
        if self.cfg.refine.mode.value == "llm":
            llm = self._backend("refine.llm", self.cfg.refine.llm)
        upstream = self.work / "refine-inputs" / f"{self.hashes['segment']}-{self.hashes['caption']}"
        result = refine_records(records, self.cfg.refine, llm, upstream)
        # Annotated nodes whose later rounds were cut short count too: retry_failed=true resumes them.
        failures.extend([*result.failures, *result.incomplete])
        self.seconds["refine"] += time.perf_counter() - start
        if llm is not None:
            refined = [*result.failures, *result.incomplete]
            tripped = self._guard(
                refined, {LLM_ROLE: result.selected - result.from_cache}, {id(f): LLM_ROLE for f in refined}
            )
            if tripped is not None:
                reopen_nodes(upstream, result.config_hash, tripped.failures)
                raise tripped

    def _guard(
        self, failures: list[StageError], requests: dict[str, int], role_of: dict[int, str]
    ) -> FailureRateExceeded | None:
        """The failure-rate guard's verdict on one stage of a batch; its failures become retryable."""
        try:
            check_failure_rate(failures, requests, role_of, self.cfg.failure_guard)
        except FailureRateExceeded as err:
            for failure in err.failures:
                failure.retryable = True  # type: ignore[attr-defined]
            return err
        return None

    def sample(self, record: VideoRecord, source: Any) -> tuple[str, dict[str, bytes]]:
        start = time.perf_counter()
        files: dict[str, bytes] = {}
        mode = self.cfg.sample_video
        if mode.mode == "copy":
            files["mp4"] = Path(source.path).read_bytes()
        elif mode.mode == "reencode":
            cached = self.work / "videos" / record.video_uid / f"video-{self.hashes['video']}.mp4"
            if not cached.is_file():
                write_bytes_atomic(cached, reencode(source, mode.short_side, mode.fps, mode.crf))
            files["mp4"] = cached.read_bytes()
        else:
            record.extra["source_path"] = str(Path(source.path).resolve())
        record.provenance = record.provenance or Provenance()
        record.provenance.config_hash = self.hashes["shards"]
        record.provenance.models["segment"] = f"{self.cfg.segment.features}:{self.cfg.segment.model}"
        record.provenance.extra["preset"] = self.cfg.preset
        files["json"] = record.to_json().encode("utf-8")
        self.seconds["write"] += time.perf_counter() - start
        return record.video_uid, files

    def remove_stale_temps(self, shard_set: ShardSet, index: int, entries: list[Entry]) -> None:
        """A killed run leaves temp files behind; this shard's owner removes its own before writing."""
        shard_set.remove_stale_temps(index)
        for entry in entries:
            uid = str(entry.video_uid)
            if not VIDEO_UID_PATTERN.fullmatch(uid):
                continue
            for pattern in (f"videos/{uid}/.*.tmp", f"refine-inputs/*/refine/*/{uid}/.*.tmp"):
                for path in self.work.glob(pattern):
                    path.unlink(missing_ok=True)

    def build_shard(self, shard_set: ShardSet, index: int, entries: list[Entry]) -> tuple[dict | None, list]:
        """(its marker, []) once the shard is written; (None, the retryable failures) when it is not.

        The batches are pipelined (data_build/pipeline.py): segmentation, captioning and refinement each
        run in a thread of their own and the samples are written in this one, so the segmentation GPU
        works on the next batches while the model servers answer for the last ones; at most
        `batches_in_flight` batches are open at once (1: a batch at a time through every stage). Each
        batch keeps its own failures and samples, joined in batch order: the same bytes either way.
        """
        if self.cfg.batches_in_flight < 1:
            raise ConfigError(f"batches_in_flight must be ≥ 1, got {self.cfg.batches_in_flight}")
        self.remove_stale_temps(shard_set, index, entries)
        if self.cfg.batches_in_flight > 1:
            self._build_backends()
        size = self.cfg.batch_videos
        batches = [_Batch(entries[first : first + size]) for first in range(0, len(entries), size)]
        # Each stage adds to its own key of `seconds` only, and `scores` gets a video's score from the
        # segmentation alone, so no two threads update the same entry.
        stages = [self._segment_batch, self._caption_batch, self._refine_batch, self._write_batch]
        done = run_stages(batches, stages, self.cfg.batches_in_flight, _Batch.close)
        failures = [failure for batch in done for failure in batch.failures]
        samples = [sample for batch in done for sample in batch.samples]
        pending = [failure for failure in failures if retryable(failure)]
        if pending:  # not done: the rerun builds it again from the caches, asking only for what failed
            shard_set.marker_path(index).unlink(missing_ok=True)
            return None, pending
        samples.sort(key=lambda sample: sample[0])
        records = [json.loads(files["json"]) for _, files in samples]
        scored = [self.scores[uid] for uid, _ in samples if uid in self.scores]
        stats = {
            "videos": len(samples),
            "nodes": sum(len(r["nodes"]) for r in records),
            "annotated_nodes": sum(n["annotation"] is not None for r in records for n in r["nodes"]),
            "scored_videos": len(scored),
            "boundary_f1_sum": sum(score["f1"] for score in scored),
        }
        return shard_set.write_shard(index, samples, failures, self.hashes["shards"], stats), []

    def _build_backends(self) -> None:
        """The configured model backends, built before the stages' threads start: building a tiny
        model seeds torch's global random generator, which the segmentation's thread uses too."""
        for role, backend_cfg in self._roles().items():
            if backend_cfg is not None:  # a missing one is reported where it is needed, as before
                self._backend(role, backend_cfg)

    def _segment_batch(self, batch: _Batch) -> None:
        usable = self.open_sources(batch.entries, batch.failures)
        batch.opened = [source for _, source in usable]
        batch.pairs = self.segment(usable, batch.failures)

    def _caption_batch(self, batch: _Batch) -> None:
        self.caption(batch.pairs, batch.failures)

    def _refine_batch(self, batch: _Batch) -> None:
        self.refine([record for record, _ in batch.pairs], batch.failures)

    def _write_batch(self, batch: _Batch) -> None:
        for record, source in batch.pairs:
            try:
                batch.samples.append(self.sample(record, source))
            except (VideoError, OSError) as err:
                batch.failures.append(StageError(record.video_uid, "write", str(err)))
        batch.close()

    def outage(self) -> str | None:
        """Why a backend gave up on its server, if one did: then every further request would fail."""
        return next(
            (why for backend in self.backends.values() if (why := getattr(backend, "outage", None))), None
        )


def run_build(cfg: BuildConfig) -> dict[str, Any]:
    """Build this partition's shards; returns the build summary."""
    started = time.perf_counter()
    for stage in cfg.stages or ():
        if stage not in STAGES:
            raise ConfigError(f"stages: unknown stage {stage!r} (one of {', '.join(STAGES)})")
    if not 0 <= cfg.partition.index < cfg.partition.count:
        raise ConfigError(f"partition.index {cfg.partition.index} outside [0, {cfg.partition.count})")
    out = Path(cfg.output)
    entries, input_hash = read_input(cfg)
    hashes = stage_hashes(cfg, input_hash)
    check_previous(out, cfg, hashes)
    from action100m.cluster.prefetch import check_build_files  # here: only a build pays for hub imports

    check_build_files(cfg)  # every hub file is cached (or the hub answers) and the tokenizer loaded
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "build.json", {"hashes": hashes, "videos_in_input": len(entries)})
    write_text_atomic(out / "config.yaml", OmegaConf.to_yaml(OmegaConf.structured(cfg)))

    shard_set = ShardSet(out, cfg.shard_prefix)
    if cfg.partition.count == 1:  # alone: no other worker can be writing the summary files right now
        for path in out.glob(".*.tmp"):
            path.unlink(missing_ok=True)
    builder = Builder(cfg, out, hashes)
    shards = assign_shards(entries, cfg.samples_per_shard)
    mine = [i for i in range(len(shards)) if i % cfg.partition.count == cfg.partition.index]
    built = skipped = 0
    pending: dict[int, list[StageError]] = {}
    totals = dict.fromkeys(("videos", "nodes", "failures"), 0)
    bar = tqdm(
        total=sum(len(shards[i]) for i in mine), unit="video", disable=not cfg.progress, file=sys.stderr
    )
    canaried = not cfg.canary
    for index in mine:
        if shard_skipped(shard_set, index, cfg, hashes["shards"]):
            skipped += 1
            bar.update(len(shards[index]))
            continue
        if not canaried:
            try:
                builder.canary(shards[index])
            except CanaryFailed as err:
                raise (PendingFailures(str(err)) if err.retryable else err) from None
            canaried = True
        marker, pending[index] = builder.build_shard(shard_set, index, shards[index])
        bar.update(len(shards[index]))
        if marker is None:
            why = _servers_line(pending[index])
            tqdm.write(f"build: shard {shard_set.name(index)}: {why}; not marked done", file=sys.stderr)
            if builder.outage():
                break  # the servers stay down: the rest would only fail the same way
            continue
        built += 1
        for key in totals:
            totals[key] += marker["stats"][key]
        minutes = (time.perf_counter() - started) / 60
        bar.set_postfix(
            nodes=totals["nodes"], failures=totals["failures"], per_min=f"{totals['videos'] / minutes:.0f}"
        )
    bar.close()
    for backend in builder.backends.values():
        getattr(backend, "close", lambda: None)()
    summary = {
        **shard_set.refresh_summary(),
        "built": built,
        "skipped": skipped,
        "seconds": round(time.perf_counter() - started, 1),
        "stage_seconds": {k: round(v, 1) for k, v in builder.seconds.items()},
    }
    if summary.get("scored_videos"):
        summary["boundary_f1"] = round(summary["boundary_f1_sum"] / summary["scored_videos"], 4)
    write_json_atomic(out / "stats.json", summary)
    if cfg.wandb.enabled:
        import wandb

        run = wandb.init(
            project=cfg.wandb.project,
            entity=cfg.wandb.entity,
            mode=cfg.wandb.mode,
            job_type="build",
            config=OmegaConf.to_container(OmegaConf.structured(cfg)),
        )
        run.log({f"build/{k}": v for k, v in summary.items() if isinstance(v, int | float)})
        run.finish()
    print(
        f"build: {built} shards built, {skipped} already done; {summary['samples']} videos, "
        f"{summary['nodes']} nodes, {summary['annotated_nodes']} annotated, {summary['failures']} failures "
        f"(see {out / 'failures.jsonl'}) in {summary['seconds']} s -> {out / 'shards'}"
    )
    undone = {index: failures for index, failures in pending.items() if failures}
    if undone:
        names = ", ".join(shard_set.name(index) for index in undone)
        outage = builder.outage()
        raise PendingFailures(
            f"{_servers_line([f for failures in undone.values() for f in failures])} in {len(undone)} "
            f"shard(s) ({names}), not marked done{f'; {outage}' if outage else ''}; rerun the same command "
            f"once the servers answer: it requests exactly what failed"
        )
    return summary


def _servers_line(failures: list[StageError]) -> str:
    """'N retryable backend failures (server URL: n, ...)'."""
    counts: dict[str, int] = {}
    for failure in failures:
        server = getattr(failure, "server", None) or "unknown server"
        counts[server] = counts.get(server, 0) + 1
    by_server = ", ".join(f"server {server}: {count}" for server, count in sorted(counts.items()))
    return f"{len(failures)} retryable backend failures ({by_server})"
