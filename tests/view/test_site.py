import json
import re
import shutil
from pathlib import Path

from action100m.cli import main
from action100m.dataset.schema import VideoRecord
from action100m.dataset.shards import read_tar, shard_paths
from action100m.view.render import node_file
from tests.view.conftest import HOSTILE, hostile_row

OFFICIAL_UID = "hySSAAw4t24"


def records(shards: Path) -> dict[str, VideoRecord]:
    found = {}
    for path in shard_paths(shards):
        for key, files in read_tar(path):
            found[key] = VideoRecord.from_json(files["json"])
    return found


def page_json(site: Path, uid: str) -> dict:
    html = (site / "pages" / f"{uid}.html").read_text()
    match = re.search(r'<script type="application/json" id="data">(.*?)</script>', html, re.S)
    return json.loads(match.group(1))


def view(capsys, *argv: str) -> tuple[int, str]:
    """The exit code and the error line (tqdm's bar also writes to stderr)."""
    code = main(["view", *map(str, argv)])
    errors = [line for line in capsys.readouterr().err.splitlines() if "action100m view: error:" in line]
    assert len(errors) == (1 if code else 0)
    return code, errors[0] if errors else ""


def tree(site: Path) -> dict[str, bytes]:
    return {str(p.relative_to(site)): p.read_bytes() for p in sorted(site.rglob("*")) if p.is_file()}


def test_every_video_gets_a_page_player_and_leaf_thumbnails(demo, demo_site):
    index = (demo_site / "index.html").read_text()
    for uid, record in records(demo).items():
        assert f'href="pages/{uid}.html"' in index
        assert (demo_site / "videos" / f"{uid}.mp4").is_file()
        data = page_json(demo_site, uid)
        assert data["video"] == f"../videos/{uid}.mp4" and len(data["nodes"]) == len(record.nodes)
        thumbs = sorted((demo_site / "thumbs" / uid).glob("*.jpg"))
        assert len(thumbs) == len(record.leaves())
        assert {n["thumb"] for n in data["nodes"] if n["thumb"]} == {
            f"../thumbs/{uid}/{t.name}" for t in thumbs
        }
    assert (demo_site / "assets" / "viewer.js").is_file() and (demo_site / "assets" / "viewer.css").is_file()
    assert "index-2.html" not in index and not (demo_site / "index-2.html").exists()


def test_pages_use_only_bundled_files(demo_site):
    for page in [demo_site / "index.html", *sorted((demo_site / "pages").glob("*.html"))]:
        html = page.read_text()
        assert "http://" not in html and "https://" not in html and "//cdn" not in html
        for href in re.findall(r'(?:src|href)="([^"]+)"', html):
            assert (page.parent / href).is_file(), f"{page.name}: {href}"


def test_index_is_paginated_with_per_page(demo, tmp_path, capsys):
    code, _ = view(capsys, demo, "--out", tmp_path / "site", "--per-page", 3)
    assert code == 0
    site, uids = tmp_path / "site", sorted(records(demo))
    names = ["index.html", "index-2.html", "index-3.html"]
    assert sorted(p.name for p in site.glob("index*.html")) == sorted(names)
    for number, name in enumerate(names, start=1):
        html = (site / name).read_text()
        assert re.findall(r'href="pages/([^"]+)\.html"', html) == uids[(number - 1) * 3 : number * 3]
        assert ('rel="prev"' in html) == (number > 1) and ('rel="next"' in html) == (number < 3)
        assert f"page {number} of 3" in html
    assert 'href="index-2.html"' in (site / "index.html").read_text()
    # a video's page links back to the index page that lists it
    assert 'href="../index-3.html"' in (site / "pages" / f"{uids[-1]}.html").read_text()


def test_videos_selects_the_first_n_or_named_uids(demo, tmp_path, capsys):
    uids = sorted(records(demo))
    assert view(capsys, demo, "--out", tmp_path / "first", "--videos", 2)[0] == 0
    assert sorted(p.stem for p in (tmp_path / "first" / "pages").glob("*.html")) == uids[:2]
    picked = [uids[5], uids[1]]
    assert view(capsys, demo / "shards", "--out", tmp_path / "named", "--videos", *picked)[0] == 0
    assert sorted(p.stem for p in (tmp_path / "named" / "pages").glob("*.html")) == sorted(picked)


def test_an_unknown_uid_is_an_error_naming_it(demo, tmp_path, capsys):
    code, err = view(capsys, demo, "--out", tmp_path / "site", "--videos", "synth-000000", "no-such-video")
    assert code == 2 and "'no-such-video'" in err


def test_official_sample_without_its_video_still_gets_a_page(official_sample, tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    site = tmp_path / "site"
    code, _ = view(capsys, "--annotations", official_sample, "--videos-dir", videos, "--out", site)
    assert code == 0
    html = (site / "pages" / f"{OFFICIAL_UID}.html").read_text()
    assert "<video" not in html and "No video file for this record" in html
    assert "Journal with Me No. 39" in (site / "index.html").read_text()
    data = page_json(site, OFFICIAL_UID)
    assert len(data["nodes"]) == 917 and data["video"] is None
    assert not any(n["thumb"] for n in data["nodes"]) and not (site / "thumbs").exists()


def test_videos_dir_is_named_as_such_with_annotations(official_sample, tmp_path, capsys):
    code, err = view(capsys, "--annotations", official_sample, "--videos", tmp_path, "--out", tmp_path / "s")
    assert code == 2 and "--videos-dir" in err


def test_failures_are_counted_per_video_and_in_all(demo, tmp_path, capsys):
    shards = tmp_path / "shards"
    shutil.copytree(demo, shards)
    lines = [
        {"video_uid": "synth-000001", "node_id": "n1", "stage": "caption", "reason": "timeout"},
        {"video_uid": "synth-000001", "node_id": None, "stage": "refine", "reason": "bad answer"},
        {"video_uid": "synth-999999", "node_id": None, "stage": "segment", "reason": "no frames"},
    ]
    (shards / "failures.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert view(capsys, shards, "--out", tmp_path / "site")[0] == 0
    index = (tmp_path / "site" / "index.html").read_text()
    assert "3 failures recorded (2 for the videos shown)" in index
    row = re.search(r"<tr><td class=\"uid\"><a href=\"pages/synth-000001.html\">.*?</tr>", index).group(0)
    assert row.endswith('<td class=num><span class="bad">2</span></td></tr>')
    failures = page_json(tmp_path / "site", "synth-000001")["failures"]
    assert [f["reason"] for f in failures] == ["timeout", "bad answer"]


def test_same_input_same_bytes_for_any_workers(demo, tmp_path, capsys):
    assert view(capsys, demo, "--out", tmp_path / "one", "--videos", 3)[0] == 0
    assert view(capsys, demo, "--out", tmp_path / "two", "--videos", 3, "--workers", 2)[0] == 0
    one, two = tree(tmp_path / "one"), tree(tmp_path / "two")
    assert one == two and any(name.startswith("thumbs/") for name in one)
    # a rebuild in place replaces the site, leaving nothing of a larger earlier one
    assert view(capsys, demo, "--out", tmp_path / "two", "--videos", 3, "--per-page", 1)[0] == 0
    assert view(capsys, demo, "--out", tmp_path / "two", "--videos", 3)[0] == 0
    assert tree(tmp_path / "two") == one


def test_hostile_text_is_escaped(hostile_release, tmp_path, capsys):
    assert view(capsys, "--annotations", hostile_release, "--out", tmp_path / "site")[0] == 0
    page = (tmp_path / "site" / "pages" / "hostile.html").read_text()
    index = (tmp_path / "site" / "index.html").read_text()
    for html in (page, index):
        assert "<script>alert" not in html and "<img src=x" not in html
    assert page.count("</script>") == 2  # the data's own and viewer.js's
    assert page_json(tmp_path / "site", "hostile")["nodes"][0]["segment_caption"] == HOSTILE
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in index


def test_unsafe_node_ids_get_hashed_file_names():
    assert node_file("2d2ef8eb-92c1-56db-a668-3b5515c23b87") == "2d2ef8eb-92c1-56db-a668-3b5515c23b87"
    for unsafe in ("../../etc/passwd", "a/b", "node 1", "x" * 200):
        name = node_file(unsafe)
        assert re.fullmatch(r"sha1-[0-9a-f]{40}", name)
    assert node_file("a/b") != node_file("a/c")


def test_bad_inputs_are_one_line_errors_naming_the_file(tmp_path, capsys):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    release = tmp_path / "release.jsonl"
    release.write_text(json.dumps(hostile_row()) + "\n")
    code, err = view(capsys, "--annotations", release, "--out", other)
    assert code == 2 and f"{other}: not empty and not a viewer site" in err
    assert (other / "keep.txt").read_text() == "mine"
    broken = hostile_row("broken")
    broken["nodes"][2]["start"] = 2.5  # a gap between the root's children
    release.write_text(json.dumps(broken) + "\n")
    code, err = view(capsys, "--annotations", release, "--out", tmp_path / "site")
    assert code == 2 and str(release) in err and "video broken" in err
    code, err = view(capsys, tmp_path / "nothing", "--out", tmp_path / "site")
    assert code == 2 and "nothing" in err
    code, err = view(capsys, "--out", tmp_path / "site")
    assert code == 2 and "shard set (OUT) or --annotations" in err


def test_an_undecodable_video_keeps_its_page_and_says_why(hostile_release, tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "hostile.mp4").write_bytes(b"not a video at all" * 100)
    code, _ = view(
        capsys, "--annotations", hostile_release, "--videos-dir", videos, "--out", tmp_path / "site"
    )
    assert code == 0
    data = page_json(tmp_path / "site", "hostile")
    assert len(data["nodes"]) == 3 and not any(node["thumb"] for node in data["nodes"])
    [failure] = data["failures"]
    assert failure["stage"] == "view" and failure["reason"].startswith("no thumbnails: video hostile: ")
