"""Tree-of-Captions decoding: one pass over the union of all nodes' frames vs decoding per node.

A 5-minute 640x360 SynthActions video (SynthActions videos joined end to end) is segmented with pixel
features into its full tree; then the caption stage plans 32 frames per node and a mid-frame per leaf.
Both ways run with PyAV on the same file and prepare the same frames the same way, with a captioner
that answers at once, so only decoding and preprocessing are timed. "Decoded" counts every frame the decoder produced, the ones in between included.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from action100m.backends import GenerationConfig, ImageCaptioner, VideoCaptioner  # noqa: E402
from action100m.dataset.schema import VideoRecord  # noqa: E402
from action100m.synth.generate import generate_dataset  # noqa: E402
from action100m.video import PyAVSource, open_video  # noqa: E402
from action100m.video.sampling import mid_frame_index, uniform_indices  # noqa: E402
from action100m.video.writer import write_video  # noqa: E402
from data_build.caption import CaptionConfig, caption_records, image_frames, segment_frames  # noqa: E402
from data_build.segment import SegmentConfig, segment_videos  # noqa: E402


class InstantCaptioner(ImageCaptioner, VideoCaptioner):
    """Answers every request at once, so the benchmark times decoding alone."""

    kind, model_id, generation = "instant", "instant", GenerationConfig()

    def caption_images(self, images, prompt):
        return ["an image"] * len(images)

    def caption_videos(self, clips, prompt):
        return ["a video"] * len(clips)


class CountingPyAVSource(PyAVSource):
    produced = 0

    def _indexed_frames(self, container, stream, first):
        for item in super()._indexed_frames(container, stream, first):
            CountingPyAVSource.produced += 1
            yield item


def long_synth_video(folder: Path, seconds: float) -> Path:
    """SynthActions videos at 640x360 joined end to end until `seconds` long."""
    generate_dataset(folder / "synth", videos=max(2, int(seconds // 20)), seed=0, size="640x360")
    manifest = [json.loads(line) for line in (folder / "synth" / "manifest.jsonl").read_text().splitlines()]

    def frames():
        shown = 0
        while True:
            for entry in manifest:
                source = open_video(folder / "synth" / entry["path"])
                for _, frame in source.iter_frames(range(source.info.num_frames)):
                    if shown >= seconds * source.info.fps:
                        return
                    shown += 1
                    yield frame.numpy()

    return write_video(folder / "long.mp4", frames(), fps=10)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a 1-minute video instead of 5 minutes")
    args = parser.parse_args()
    seconds = 60 if args.quick else 300
    with tempfile.TemporaryDirectory() as tmp:
        path = long_synth_video(Path(tmp), seconds)
        info = open_video(path).info
        [tree] = segment_videos([("long", open_video(path))], SegmentConfig(features="pixel"))
        record = VideoRecord("long", {"duration": info.duration}, tree.nodes)
        leaves = record.leaves()
        print(
            f"video {info.width}x{info.height}, {info.num_frames} frames, {info.duration:.0f} s; "
            f"tree of {len(record.nodes)} nodes, {len(leaves)} leaves"
        )

        cfg = CaptionConfig()
        start = time.perf_counter()
        result = caption_records(
            [(record, CountingPyAVSource(path))], cfg, InstantCaptioner(), InstantCaptioner()
        )
        one_pass_s = time.perf_counter() - start
        one_pass_decoded = CountingPyAVSource.produced
        unique_needed = result.frames_decoded

        # the same frames and the same preprocessing, each node decoding its own frames
        per_node = [
            (uniform_indices(n.start, n.end, info.fps, info.num_frames, cfg.frames_per_segment), True)
            for n in record.nodes
        ]
        per_node += [([mid_frame_index(n.start, n.end, info.fps, info.num_frames)], False) for n in leaves]
        CountingPyAVSource.produced = 0
        start = time.perf_counter()
        for indices, is_segment in per_node:
            frames = CountingPyAVSource(path).read_frames(indices)
            if is_segment:
                segment_frames(frames, cfg.segment_frame_size)
            else:
                image_frames(frames, cfg.image_short_side)
        per_node_s = time.perf_counter() - start
        per_node_decoded = CountingPyAVSource.produced

    print(
        f"one pass : {one_pass_s:6.2f} s, decoded {one_pass_decoded} frames for {unique_needed} distinct "
        f"needed ({result.frames_needed} with repeats across nodes)"
    )
    print(f"per node : {per_node_s:6.2f} s, decoded {per_node_decoded} frames")
    decoded_per_needed = one_pass_decoded / unique_needed
    speedup = per_node_s / one_pass_s
    print(
        f"RESULT decoded_per_needed={decoded_per_needed:.3f} onepass_speedup={speedup:.1f} "
        f"per_node_decoded_per_needed={per_node_decoded / unique_needed:.1f}"
    )


if __name__ == "__main__":
    main()
