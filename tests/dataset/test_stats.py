from action100m.cli import main
from action100m.dataset.schema import Annotation, Node, VideoRecord, read_official_json
from action100m.dataset.shards import ShardSet
from action100m.dataset.stats import collect_stats


def short_video(uid, brief):
    """Two 1.5 s leaves under a 3 s root whose annotation says `brief`."""
    annotation = Annotation("A bowl.", "A bowl on a table.", brief, "Stir it slowly.", "a person")
    nodes = [
        Node("r", None, 0, 0.0, 3.0, annotation=annotation),
        Node("a", "r", 1, 0.0, 1.5),
        Node("b", "r", 1, 1.5, 3.0),
    ]
    return VideoRecord(uid, {"title": uid, "duration": 3}, nodes)


def write_set(root, *shards):
    shard_set = ShardSet(root)
    for index, records in enumerate(shards):
        samples = [(r.video_uid, {"json": r.to_json().encode()}) for r in records]
        shard_set.write_shard(index, samples, [], "h", {"videos": len(records)})
    return root


def test_official_sample_figures(tmp_path, capsys, official_sample):
    out = write_set(tmp_path / "out", read_official_json(official_sample))
    assert main(["stats", str(out)]) == 0
    printed = capsys.readouterr().out
    for line in [
        "| videos | 1 |",
        "| hours of video | 0.19 |",  # 689.8 s
        "| nodes | 917 |",
        "| annotated nodes | 262 (28.6% of nodes) |",
        '| "N/A" actions | 5 (1.9% of annotated; paper 3.2%) |',
        "| < 3 s | 549 | 59.9 | 64.0 |",
        "| 3–10 s | 244 | 26.6 | 23.8 |",
        "| 10–60 s | 107 | 11.7 | 10.2 |",
        "| ≥ 60 s | 17 | 1.9 | 2.0 |",
        "| brief action | 3.3 | 257 | 3.2 |",
        "| brief caption | 19.1 | 262 | 19.2 |",
        "| 1 | apply tape | 8 |",
    ]:
        assert line in printed
    top = printed.split("## Top 20 brief actions")[1].split("\n\n", 2)[1]
    assert len([row for row in top.splitlines() if row.startswith("| ")]) == 1 + 20  # header, 20 actions
    card = (out / "dataset_card.md").read_text()
    assert "| nodes | 917 |" in card and "![Node durations](node_durations.png)" in card
    assert (out / "node_durations.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_counts_add_up_over_shards(tmp_path, capsys):
    shards = [
        [short_video("a", "Stir  Mixture"), short_video("b", "N/A")],
        [short_video("c", "stir mixture")],
    ]
    out = write_set(tmp_path / "out", *shards)
    stats = collect_stats(out / "shards")
    assert (stats.shards, stats.videos, stats.nodes, stats.annotated_nodes, stats.not_applicable) == (
        2,
        3,
        9,
        3,
        1,
    )
    assert stats.buckets == [6, 3, 0, 0] and int(stats.histogram.sum()) == 9
    assert dict(stats.actions) == {"stir mixture": 2}  # N/A is not an action; case and spacing fold
    assert stats.mean_words("action_brief") == 2.0 and stats.mean_words("summary_detailed") == 5.0
    assert main(["stats", str(out / "shards")]) == 0  # the shards/ folder works too; the card goes beside it
    assert (out / "dataset_card.md").is_file() and "| 1 | stir mixture | 2 |" in capsys.readouterr().out


def test_no_shards_is_one_line(tmp_path, capsys):
    assert main(["stats", str(tmp_path / "nope")]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line == f"action100m stats: error: {tmp_path / 'nope'}: no such shard folder"
