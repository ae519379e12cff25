"""The failure-rate guard: a batch whose requests mostly fail the same way stops the build.

A server that refuses what we send (a model it cannot take, a request kind it does not support, a
prompt longer than its context) answers every request with the same final error. Recorded one node at
a time, that would be a done, empty dataset, and refinement would then be billed for trees without
captions. So after each stage of a batch, the final (non-retryable) failures are grouped by the role
that made the request and the kind of error; when one group passes `max_share` of the role's requests
in that batch (and counts at least `min_failures`), the build stops non-zero with one line naming the
role, the server and the error. The failures of that group are reopened first (`FailureRateExceeded`
carries them; the caller marks them retryable in its caches), so a rerun once the cause is fixed asks
for exactly them, and the batch's shard is not written. Failures under the threshold are content
failures of single items and stay recorded as before.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from action100m.backends.config import serving
from action100m.errors import Action100MError, StageError

# The caption field a failure names -> the config key of the backend that made the request.
FIELD_ROLES = {
    "frame_caption": "caption.frame_captioner",
    "segment_caption": "caption.segment_captioner",
    "action_label": "caption.segment_captioner",
}
LLM_ROLE = "refine.llm"
_STATUS = re.compile(r"HTTP \d{3}")


@dataclass
class GuardConfig:
    # Whether the build stops, never what it writes: a serving setting, out of every cache key.
    max_share: float = serving(0.05)  # of one role's requests in a batch failing the same way; 1: off
    min_failures: int = serving(3)  # never stop for fewer failures than this (a batch of 10 nodes)


class FailureRateExceeded(Action100MError):
    """One role's requests failed the same way past the configured share; `failures` are that group."""

    def __init__(self, message: str, failures: list[StageError]):
        super().__init__(message)
        self.failures = failures


def failure_kind(reason: str) -> str:
    """What kind of error a failure is, for grouping: its HTTP status when it has one, else the words
    before its first detail ('empty content', 'unusable answer', ...)."""
    if status := _STATUS.search(reason):
        return status.group(0)
    if backend := re.search(r"model '[^']*': (.*)", reason):  # a caption's BackendError
        reason = backend.group(1)
    elif refine := re.match(r"round \d+: (backend: )?(.*)", reason):
        if not refine.group(1):
            return "unusable answer"  # the model answered, but never validly: refine's content failure
        reason = refine.group(2)
    return re.split(r"[:(;]", reason, maxsplit=1)[0].strip()[:60] or "unknown"


def check_failure_rate(
    failures: Iterable[StageError], requests: dict[str, int], role_of: dict[int, str], cfg: GuardConfig
) -> None:
    """Raise `FailureRateExceeded` when a (role, kind) group of final `failures` passes `cfg.max_share`
    of that role's `requests`, naming the largest such group and carrying every such group's failures;
    `role_of` maps id(failure) to its role."""
    groups: dict[tuple[str, str], list[StageError]] = {}
    for failure in failures:
        if getattr(failure, "retryable", False) or id(failure) not in role_of:
            continue
        groups.setdefault((role_of[id(failure)], failure_kind(failure.reason)), []).append(failure)
    over = [
        (role, kind, group, max(requests.get(role, 0), len(group)))
        for (role, kind), group in sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
        if len(group) >= cfg.min_failures and len(group) > cfg.max_share * max(requests.get(role, 0), 1)
    ]
    if not over:
        return
    role, kind, group, total = over[0]
    servers = Counter(getattr(f, "server", None) or "a local model" for f in group)
    server = ", ".join(name for name, _ in servers.most_common(3))
    more = f" (and {len(over) - 1} more such group(s))" if len(over) > 1 else ""
    raise FailureRateExceeded(
        f"failure-rate guard: {role} at {server}: {len(group)} of {total} requests in this batch failed "
        f"with {kind} ({len(group) / total:.0%} > failure_guard.max_share={cfg.max_share:g}){more}; "
        f"e.g. {group[0].reason[:300]}; nothing of this batch is marked done, and a rerun once the "
        f"cause is fixed requests these again",
        [failure for *_, failures_of, _ in over for failure in failures_of],
    )
