"""CrossTask step recognition (task step, "CrossTask-SR") and task recognition (task task, "-TR").

Files (in root, the crosstask_release/ that crosstask_release.zip unpacks to, or in that folder under
root): `tasks_primary.txt` (per task 5 lines + a blank: id, title, wikiHow url, step count,
comma-separated steps), the video list `videos_val.csv` (split val) or `videos.csv` (split all), lines
`<task_id>,<youtube_id>,<url>`, and `annotations/<task_id>_<youtube_id>.csv` with lines `<step number,
1-based>,<start s>,<end s>`. Only the 18 primary tasks are annotated, so videos of related tasks are not
clips. Step classes are the steps of all primary tasks in file order (a step string shared by tasks ties);
task classes the 18 titles. A listed primary-task video without an annotation file gives no step clips (as
in CrossTask's own evaluation); their count is reported as `unannotated_videos`. Videos (not distributed;
download by YouTube id): `<videos>/videos/<youtube_id>.mp4` (layout flat) or
`<videos>/videos/<task_id>/<youtube_id>.mp4` (layout by_task).
"""

from __future__ import annotations

from pathlib import Path

from action100m.eval.benchmarks.base import Benchmark, Clip, Source, class_list, read_lines
from action100m.eval.errors import BenchmarkFileError
from action100m.eval.prompts import normalise_class_name

NAME = "crosstask"
TASKS = ("step", "task")
SPLITS = ("val", "all")
LAYOUTS = ("flat", "by_task")
LIST_FILES = {"val": "videos_val.csv", "all": "videos.csv"}
FOLDERS = ("", "crosstask_release")


def read_task_cards(path: Path) -> dict[str, tuple[str, list[str]]]:
    """task id -> (title, steps), in file order, from 5-line cards separated by blank lines."""
    lines = read_lines(path)  # blank separators dropped: every card is exactly 5 lines
    if len(lines) % 5:
        raise BenchmarkFileError(
            NAME, path, f"{len(lines)} non-blank lines, not a multiple of 5 (id, title, url, n, steps)"
        )
    cards = {}
    for first in range(0, len(lines), 5):
        task_id, title, _url, count, steps = lines[first : first + 5]
        names = [step.strip() for step in steps.split(",")]
        if not count.isdigit() or int(count) != len(names):
            raise BenchmarkFileError(NAME, path, f"task {task_id}: says {count} steps, lists {len(names)}")
        cards[task_id] = (title, names)
    return cards


def read_steps(path: Path, count: int) -> list[tuple[int, float, float]]:
    """(step index 0-based, start, end) of one annotation file."""
    out = []
    for k, line in enumerate(read_lines(path), start=1):
        try:
            step, start, end = line.split(",")
            out.append((int(step) - 1, float(start), float(end)))
        except ValueError:
            raise BenchmarkFileError(
                NAME, path, f"line {k}: expected <step>,<start>,<end>, got {line!r}"
            ) from None
        if not 0 <= out[-1][0] < count:
            raise BenchmarkFileError(NAME, path, f"line {k}: step {step} outside 1..{count}")
    return out


def read(source: Source) -> Benchmark:
    task = source.choice(NAME, "task", source.task, TASKS)
    split = source.choice(NAME, "split", source.split, SPLITS)
    layout = source.choice(NAME, "layout", source.layout, LAYOUTS)
    cards_path = source.find(NAME, "tasks", ("tasks_primary.txt",), FOLDERS)
    list_path = source.find(NAME, "videos", (LIST_FILES[split],), FOLDERS)
    # the task cards and lists alone make the task benchmark: only steps need the annotation folder
    annotations = (
        source.find(NAME, "annotations", ("annotations",), FOLDERS, "*.csv") if task == "step" else None
    )
    cards = read_task_cards(cards_path)
    class_list(NAME, cards_path, list(cards))
    task_ids = list(cards)
    step_offset, step_names = {}, []
    for task_id, (_title, steps) in cards.items():
        step_offset[task_id] = len(step_names)
        step_names.extend(steps)
    ext = source.video_ext or ".mp4"
    clips, files, unannotated = [], [cards_path, list_path], 0
    for k, line in enumerate(read_lines(list_path), start=1):
        parts = line.split(",")
        if len(parts) < 2:
            raise BenchmarkFileError(NAME, list_path, f"line {k}: expected <task_id>,<youtube_id>,<url>")
        task_id, youtube_id = parts[0].strip(), parts[1].strip()
        if task_id not in cards:
            continue  # a related task: never annotated, not part of either benchmark
        video = source.videos / "videos" / (task_id if layout == "by_task" else "") / f"{youtube_id}{ext}"
        if task == "task":
            clips.append(Clip(youtube_id, video, task_ids.index(task_id)))
            continue
        annotation = annotations / f"{task_id}_{youtube_id}.csv"
        if not annotation.is_file():
            unannotated += 1
            continue
        for s, (step, start, end) in enumerate(read_steps(annotation, len(cards[task_id][1]))):
            clips.append(Clip(f"{youtube_id}_{s}", video, step_offset[task_id] + step, start, end))
    if task == "step":
        class_names, notes = step_names, {"unannotated_videos": unannotated}
        files.append(annotations)
    else:
        class_names, notes = [cards[t][0] for t in task_ids], {}
    texts = [normalise_class_name(n) for n in class_names]
    return Benchmark(NAME, split, task, class_names, texts, clips, files, notes)
