"""`action100m view`: a static site that opens from file:// (no server, nothing fetched from elsewhere).

SITE/
  index.html, index-2.html, ...   the videos by video_uid, `per_page` a page
  pages/<uid>.html                a video's page: player, segment-tree timeline, node details
  videos/<uid>.<ext>              the video, copied from the shard or the videos folder
  thumbs/<uid>/<node>.jpg         the middle frame of each leaf
  assets/viewer.js, viewer.css    the page's only script and style
  .action100m-view                marks the folder as a viewer site, which a later build replaces

Video pages are made by `workers` processes; the bytes are the same for any number and any run.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import shutil
import sys
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm import tqdm

from action100m.dataset.schema import VideoRecord
from action100m.utils.atomic import atomic_path, write_bytes_atomic, write_text_atomic
from action100m.video import VideoError, open_readable
from action100m.view.render import Row, index_name, index_page, node_file, page_data, video_page
from action100m.view.sources import Entry, Source, ViewError

MARKER = ".action100m-view"
ASSETS = ("viewer.css", "viewer.js")
THUMB_WIDTH = 160
JPEG_QUALITY = 85
# leaves decoded at a time: a long video has hundreds, each a full-size frame until it is shrunk
THUMB_BATCH = 16


@dataclass
class PageTask:
    record: VideoRecord
    video: str | None  # relative to SITE
    failures: list[dict[str, Any]]
    row: Row
    index_href: str
    prev_uid: str | None
    next_uid: str | None


def _prepare(site: Path) -> None:
    """Make `site` an empty viewer site: refuse a folder that holds anything else."""
    if site.exists() and not site.is_dir():
        raise ViewError(f"{site}: not a folder")
    if site.is_dir() and any(site.iterdir()) and not (site / MARKER).is_file():
        raise ViewError(f"{site}: not empty and not a viewer site; give a new or empty folder")
    for folder in ("pages", "videos", "thumbs", "assets"):
        shutil.rmtree(site / folder, ignore_errors=True)
    for old in site.glob("index*.html"):
        old.unlink()
    write_text_atomic(site / MARKER, "action100m view, format 1\n")
    for name in ASSETS:
        write_bytes_atomic(
            site / "assets" / name, files("action100m.view").joinpath("assets", name).read_bytes()
        )


def _copy_video(site: Path, entry: Entry) -> str | None:
    uid = entry.record.video_uid
    if entry.video is None:
        return None
    if isinstance(entry.video, bytes):
        relative = f"videos/{uid}.mp4"
        write_bytes_atomic(site / relative, entry.video)
        return relative
    relative = f"videos/{uid}{entry.video.suffix.lower()}"
    with atomic_path(site / relative) as tmp:
        shutil.copyfile(entry.video, tmp)
    return relative


def _thumbnails(site: Path, record: VideoRecord, video: str) -> dict[str, str]:
    """node_id → href (from a page) of the JPEG of each leaf's middle frame."""
    leaves = sorted(record.leaves(), key=lambda n: (n.start, n.node_id))
    hrefs = {}
    try:
        with open_readable(site / video) as source:
            # a record's spans may run up to a second past the video's last frame
            last = max(source.info.duration - 1.0 / source.info.fps, 0.0)
            for start in range(0, len(leaves), THUMB_BATCH):
                batch = leaves[start : start + THUMB_BATCH]
                frames = source.read_times([min((n.start + n.end) / 2, last) for n in batch])
                for node, frame in zip(batch, frames, strict=True):
                    relative = f"thumbs/{record.video_uid}/{node_file(node.node_id)}.jpg"
                    write_bytes_atomic(site / relative, _jpeg(frame.numpy()))
                    hrefs[node.node_id] = f"../{relative}"
    except VideoError as err:
        raise ViewError(f"video {record.video_uid}: {err}") from err
    return hrefs


def _jpeg(frame: Any) -> bytes:
    image = Image.fromarray(frame)
    width = min(THUMB_WIDTH, image.width)
    image = image.resize(
        (width, max(1, round(image.height * width / image.width))), Image.Resampling.BILINEAR
    )
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _render(site: Path, task: PageTask) -> None:
    thumbs, failures = {}, task.failures
    if task.video:
        try:
            thumbs = _thumbnails(site, task.record, task.video)
        except ViewError as err:  # the page still shows the tree: the video is what is broken
            failures = [*failures, {"node_id": None, "stage": "view", "reason": f"no thumbnails: {err}"}]
    data = page_data(task.record, f"../{task.video}" if task.video else None, thumbs, failures)
    html = video_page(task.row, data, task.index_href, task.prev_uid, task.next_uid)
    write_text_atomic(site / "pages" / f"{task.record.video_uid}.html", html)


def build_site(
    source: Source, site: str | os.PathLike, per_page: int = 100, workers: int = 1, progress: bool = False
) -> dict[str, int]:
    """Write the viewer site of `source` into `site`; returns counts (videos, pages, nodes, failures)."""
    if per_page < 1:
        raise ViewError(f"--per-page must be at least 1, got {per_page}")
    if workers < 1:
        raise ViewError(f"--workers must be at least 1, got {workers}")
    site = Path(site)
    _prepare(site)
    order = {uid: position for position, uid in enumerate(source.uids)}
    pages = max(1, -(-len(order) // per_page))
    rows: dict[str, Row] = {}
    bar = tqdm(total=len(order), desc="view", unit="video", disable=not progress, file=sys.stderr)
    with ExitStack() as stack:
        pool = None
        if workers > 1:  # spawned: forking a process that may be running torch's threads can deadlock
            context = multiprocessing.get_context("spawn")
            pool = stack.enter_context(ProcessPoolExecutor(workers, mp_context=context))
        pending: deque[Future] = deque()
        for entry in source.entries:
            uid = entry.record.video_uid
            video = _copy_video(site, entry)
            rows[uid] = Row.of(entry.record, len(entry.failures), video is not None)
            position = order[uid]
            task = PageTask(
                entry.record,
                video,
                entry.failures,
                rows[uid],
                f"../{index_name(position // per_page + 1)}",
                source.uids[position - 1] if position > 0 else None,
                source.uids[position + 1] if position + 1 < len(source.uids) else None,
            )
            if pool is None:
                _render(site, task)
                bar.update()
                continue
            pending.append(pool.submit(_render, site, task))
            # a bounded queue: the records (and videos) of a large set are never all in memory
            while len(pending) > 2 * workers:
                pending.popleft().result()
                bar.update()
        for future in pending:
            future.result()
            bar.update()
    bar.close()
    ordered = [rows[uid] for uid in source.uids]
    totals = {
        "videos": len(ordered),
        "nodes": sum(sum(row.level_counts) for row in ordered),
        "failures": source.failures_total,
        "shown_failures": sum(row.failures for row in ordered),
    }
    for page in range(1, pages + 1):
        chunk = ordered[(page - 1) * per_page : page * per_page]
        write_text_atomic(site / index_name(page), index_page(chunk, page, pages, totals))
    return {**totals, "pages": pages}
