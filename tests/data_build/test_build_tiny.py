"""`build=tiny` on real mp4s: a random-init LLM, decoded under the answer's JSON schema by the local
structured-output engine, annotates every refined node with a schema-valid answer (before, every
refined node failed "no JSON object in the reply")."""

from __future__ import annotations

import pytest

from action100m.dataset.schema import VideoRecord
from action100m.dataset.shards import read_tar
from action100m.refine.answer import ANNOTATION_SCHEMA, AnswerRules, validate_answer
from action100m.synth.generate import generate_dataset
from data_build.refine import select_nodes
from data_build.run import run_build
from tests.data_build.test_build import build_config

NO_FORM_RULES = AnswerRules(
    max_action_brief_words=0,
    base_form_action=False,
    no_timestamps=False,
    english_only=False,
    consistent_na=False,
)  # random text breaks every form rule


@pytest.mark.slow
def test_a_tiny_build_annotates_every_refined_node_under_the_schema(tmp_path):
    generate_dataset(tmp_path / "synth", videos=4, seed=3)
    out = tmp_path / "out"
    cfg = build_config(tmp_path / "synth" / "manifest.jsonl", out, "build=tiny")
    summary = run_build(cfg)
    assert summary["failures"] == 0, (out / "failures.jsonl").read_text(encoding="utf-8")
    records = [
        VideoRecord.from_json(files["json"])
        for tar in sorted((out / "shards").glob("*.tar"))
        for _, files in read_tar(tar)
    ]
    assert len(records) == 4
    refined = 0
    for record in records:
        assert record.provenance.models["refine"] == cfg.refine.llm.model
        for node in select_nodes(record, cfg.refine.min_duration):
            refined += 1
            assert node.annotation is not None, f"{record.video_uid}/{node.node_id}"
            answer = node.annotation.to_dict()
            assert sorted(answer) == sorted(ANNOTATION_SCHEMA["properties"])
            validate_answer(answer, NO_FORM_RULES)  # the schema's shape: every field a non-empty string
            steps = node.provenance["refine"]
            assert steps["complete"] and len(steps["rounds"]) == cfg.refine.rounds
            assert all("answer" in r for r in steps["rounds"])
    assert refined >= 4
