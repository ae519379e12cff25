"""The viewer's HTML: index pages (a static table) and video pages (a shell that assets/viewer.js fills
from the page's embedded JSON). Every text from a record is escaped here or set with textContent there."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from html import escape
from typing import Any

from action100m.dataset.schema import VIDEO_UID_PATTERN, VideoRecord


@dataclass(frozen=True)
class Row:
    """One video's line in the index."""

    uid: str
    title: str
    duration: float
    level_counts: list[int]
    failures: int
    has_video: bool

    @classmethod
    def of(cls, record: VideoRecord, failures: int, has_video: bool) -> Row:
        counts = Counter(node.level for node in record.nodes)
        return cls(
            uid=record.video_uid,
            title=str(record.metadata.get("title") or ""),
            duration=timeline_duration(record),
            level_counts=[counts[level] for level in range(max(counts) + 1)],
            failures=failures,
            has_video=has_video,
        )


def index_name(page: int) -> str:
    return "index.html" if page == 1 else f"index-{page}.html"


def node_file(node_id: str) -> str:
    """A file name for a node's thumbnail: the id itself when it is safe, else its sha1."""
    if VIDEO_UID_PATTERN.fullmatch(node_id):
        return node_id
    return "sha1-" + hashlib.sha1(node_id.encode("utf-8")).hexdigest()


def timeline_duration(record: VideoRecord) -> float:
    """The span the timeline shows: the metadata's duration, or the last node's end when it is later
    (records may end up to a second past it) or there is none."""
    end = max(node.end for node in record.nodes)
    duration = record.metadata.get("duration")
    if isinstance(duration, int | float) and not isinstance(duration, bool) and duration > 0:
        return max(float(duration), end)
    return end


def clock(seconds: float) -> str:
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _json_script(data: Any) -> str:
    # "<" as \u003c: no caption can close the script element ("</script>") or open a comment
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    return f'<script type="application/json" id="data">{text}</script>'


def _document(title: str, body_class: str, body: str, assets: str) -> str:
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n"
        f'<link rel="stylesheet" href="{assets}/viewer.css">\n</head>\n'
        f'<body class="{body_class}">\n{body}\n</body>\n</html>\n'
    )


def _pager(page: int, pages: int, prefix: str = "") -> str:
    if pages == 1:
        return ""
    prev = f'<a rel="prev" href="{prefix}{index_name(page - 1)}">← previous</a>' if page > 1 else ""
    next_ = f'<a rel="next" href="{prefix}{index_name(page + 1)}">next →</a>' if page < pages else ""
    return f'<nav class="pager">{prev}<span>page {page} of {pages}</span>{next_}</nav>'


def index_page(rows: list[Row], page: int, pages: int, totals: dict[str, int]) -> str:
    """Page `page` of `pages` of the index: `rows` are this page's videos, `totals` the whole site's."""
    lines = []
    for row in rows:
        levels = " · ".join(str(count) for count in row.level_counts)
        video = "" if row.has_video else ' <span class="tag">no video</span>'
        failures = f'<span class="bad">{row.failures}</span>' if row.failures else "0"
        lines.append(
            f'<tr><td class="uid"><a href="pages/{row.uid}.html">{row.uid}</a>{video}</td>'
            f"<td>{escape(row.title)}</td><td class=num>{clock(row.duration)}</td>"
            f'<td class="levels" title="nodes at level 0, 1, 2, ...">{levels}</td>'
            f"<td class=num>{sum(row.level_counts)}</td><td class=num>{failures}</td></tr>"
        )
    summary = (
        f"{totals['videos']} videos · {totals['nodes']} nodes · "
        f"{totals['failures']} failures recorded ({totals['shown_failures']} for the videos shown)"
    )
    body = (
        f'<header class="top"><h1>Action100M viewer</h1><p class="meta">{summary}</p></header>\n<main>\n'
        f"{_pager(page, pages)}\n"
        '<table class="index"><thead><tr><th>video</th><th>title</th><th class=num>duration</th>'
        "<th>nodes per level</th><th class=num>nodes</th><th class=num>failures</th></tr></thead>\n"
        f"<tbody>\n{chr(10).join(lines)}\n</tbody></table>\n{_pager(page, pages)}\n</main>"
    )
    return _document(
        "Action100M viewer" + (f" · page {page}" if page > 1 else ""), "index-page", body, "assets"
    )


def page_data(
    record: VideoRecord,
    video: str | None,
    thumbs: dict[str, str],
    failures: list[dict[str, Any]],
) -> dict[str, Any]:
    """What viewer.js draws: the nodes by level then time, each with its thumbnail's href (leaves of a
    video with a player only), the record's provenance and the video's failures."""
    nodes = []
    for node in sorted(record.nodes, key=lambda n: (n.level, n.start, n.node_id)):
        annotation = node.annotation
        nodes.append(
            {
                "id": node.node_id,
                "parent": node.parent_id,
                "level": node.level,
                "start": node.start,
                "end": node.end,
                "frame_caption": node.frame_caption,
                "segment_caption": node.segment_caption,
                "action_label": node.action_label,
                "annotation": None if annotation is None else annotation.to_dict(),
                "provenance": node.provenance,
                "thumb": thumbs.get(node.node_id),
            }
        )
    return {
        "video_uid": record.video_uid,
        "duration": timeline_duration(record),
        "video": video,
        "nodes": nodes,
        "provenance": None if record.provenance is None else record.provenance.to_dict(),
        "failures": [{k: failure.get(k) for k in ("node_id", "stage", "reason")} for failure in failures],
    }


def video_page(
    row: Row, data: dict[str, Any], index_href: str, prev_uid: str | None, next_uid: str | None
) -> str:
    """A video's page: header, player (or a note that there is no video), detail panel, timeline."""
    prev = f'<a rel="prev" href="{prev_uid}.html">← {prev_uid}</a>' if prev_uid else "<span></span>"
    next_ = f'<a rel="next" href="{next_uid}.html">{next_uid} →</a>' if next_uid else "<span></span>"
    if data["video"]:
        player = f'<video controls preload="auto" src="{escape(data["video"])}"></video>'
    else:
        player = '<p class="note">No video file for this record: the timeline and annotations only.</p>'
    failures = f' · <span class="bad">{row.failures} failures</span>' if row.failures else ""
    meta = (
        f"{row.uid} · {clock(row.duration)} · {sum(row.level_counts)} nodes on {len(row.level_counts)} "
        f"levels{failures}"
    )
    body = (
        f'<header class="top"><nav class="crumbs"><a href="{index_href}">all videos</a>{prev}{next_}</nav>'
        f'<h1>{escape(row.title or row.uid)}</h1><p class="meta">{meta}</p></header>\n'
        '<main>\n<section class="stage">\n'
        f'<div class="player">{player}</div>\n'
        '<aside id="detail" class="detail" aria-live="polite"></aside>\n</section>\n'
        '<section class="tree"><h2>Segment tree <span class="keys">click a segment · ← → same level · '
        "↑ parent · ↓ first child</span></h2>\n"
        '<div id="timeline" class="timeline"></div></section>\n'
        '<section id="leaves" class="leaves"></section>\n'
        '<section id="failures" class="failures"></section>\n</main>\n'
        f'{_json_script(data)}\n<script src="../assets/viewer.js"></script>'
    )
    return _document(f"{row.title or row.uid} · Action100M viewer", "video-page", body, "../assets")
