"""The Tree-of-Captions as Markdown, the form in which the LLM reads a (sub)tree.

Depth first; each node a heading (its depth below the subtree's root sets the heading level) with
start → end and duration, then its segment caption, then its mid-frame caption as a quote.
"""

from __future__ import annotations

from action100m.dataset.schema import Node, VideoRecord
from action100m.errors import RecordError

MAX_HEADING_LEVEL = 6  # Markdown has six heading levels


def _seconds(t: float) -> str:
    return f"{t:.2f}s"


def node_markdown(node: Node, depth: int) -> str:
    lines = [
        f"{'#' * min(depth + 1, MAX_HEADING_LEVEL)} {_seconds(node.start)} → {_seconds(node.end)} "
        f"({_seconds(node.duration)})"
    ]
    if node.segment_caption:
        lines.append(node.segment_caption.strip())
    if node.frame_caption:
        lines.append("\n".join(f"> {line}".rstrip() for line in node.frame_caption.strip().splitlines()))
    return "\n".join(lines)


def subtree_markdown(
    record: VideoRecord,
    node_id: str | None = None,
    max_depth: int = MAX_HEADING_LEVEL,
    children: dict[str, list[Node]] | None = None,
) -> str:
    """The subtree under `node_id` (the root when None), `max_depth` levels deep (1 = the node alone).

    Pass `children` (from `record.children()`) when serialising many subtrees of one record.
    """
    children = record.children() if children is None else children
    if node_id is None:
        start = record.root
    else:
        start = next((n for n in record.nodes if n.node_id == node_id), None)
        if start is None:
            raise RecordError(f"video {record.video_uid}: no node {node_id}")
    blocks: list[str] = []
    stack: list[tuple[Node, int]] = [(start, 0)]
    while stack:
        node, depth = stack.pop()
        blocks.append(node_markdown(node, depth))
        if depth + 1 < max_depth:
            stack.extend((child, depth + 1) for child in reversed(children.get(node.node_id, [])))
    return "\n\n".join(blocks)
