"""Node selection and prompt assembly: what the LLM reads for one node, within the token budget."""

import pytest

from action100m.dataset.schema import read_official_json
from action100m.errors import ConfigError
from action100m.refine.prompt import (
    PROMPTS,
    PromptBuilder,
    PromptConfig,
    PromptError,
    metadata_yaml,
    transcript_lines,
)
from action100m.refine.tokens import TokenCounter, estimate_tokens
from data_build.refine import select_nodes
from tests.data_build.test_refine import node_named, small_record

COUNT = TokenCounter()


def build(record, name, **settings):
    return PromptBuilder(PromptConfig(**settings), COUNT).build(
        record, node_named(record, name), record.children()
    )


def test_selection_is_every_non_leaf_node_of_at_least_min_duration():
    record = small_record()
    assert [n.segment_caption for n in select_nodes(record, 4.0)] == [
        "Caption of root.",
        "Caption of A.",
        "Caption of B.",
        "Caption of B2.",
    ]
    # A1 and A2 last 4 s but are leaves; B2 lasts 6 s.
    assert len(select_nodes(record, 6.0)) == 4 and len(select_nodes(record, 8.0)) == 3
    assert len(select_nodes(record, 0.0)) == 4


def test_official_sample_selection_is_exactly_its_annotated_nodes(official_sample):
    [record] = read_official_json(official_sample)
    selected = {node.node_id for node in select_nodes(record, 4.0)}
    annotated = {node.node_id for node in record.nodes if node.annotation is not None}
    assert selected == annotated and len(selected) == 262


def test_prompt_has_instructions_schema_metadata_context_and_subtree():
    prompt = build(small_record(), "B")
    system, user = (message["content"] for message in prompt.messages)
    assert prompt.messages[0]["role"] == "system" and '"additionalProperties": false' in system
    assert "Never mention times" in system and '"N/A"' in system
    assert "title: Video v1" in user and "description: How to build a model.\n" in user
    assert "- '8.0s: now the second part'" in user and "first part" not in user  # transcript during [8, 16)
    context = user.split("<global_context>\n")[1].split("</global_context>")[0]
    assert (
        context.startswith("# 0.00s → 16.00s (16.00s)\nCaption of root.") and "## 8.00s → 16.00s" in context
    )
    assert "### " not in context  # depth 2
    segment = user.split("<segment>\n")[1].split("</segment>")[0]
    assert segment.startswith("# 8.00s → 16.00s (8.00s)\nCaption of B.\n\n## 8.00s → 10.00s")
    assert "> Frame of B2b." in segment and "Caption of A." not in segment
    assert user.endswith(PROMPTS["v1"].task)
    assert prompt.tokens == COUNT(system) + COUNT(user) + 16 and (
        prompt.subtree_depth,
        prompt.context_depth,
    ) == (3, 2)


def test_the_root_gets_no_separate_global_context():
    prompt = build(small_record(), "root")
    assert "<global_context>" not in prompt.messages[1]["content"] and prompt.context_depth == 0


def test_budget_drops_the_deepest_levels_first():
    record = small_record(caption_words=60)
    full = build(record, "B", token_budget=10**6)
    # B (level 1) shows its 3 levels (absolute 1..3); the context its 2 (absolute 0..1).
    assert (full.subtree_depth, full.context_depth) == (3, 2)
    shapes = []
    for budget in range(full.tokens, 0, -20):
        try:
            prompt = build(record, "B", token_budget=budget)
        except PromptError as err:
            assert "even with the node alone and the root as context" in str(err)
            break
        assert prompt.tokens <= budget
        if (prompt.subtree_depth, prompt.context_depth) not in shapes:
            shapes.append((prompt.subtree_depth, prompt.context_depth))
    # The subtree's bottom level goes first; at a tie (both reach level 1) the context goes.
    assert shapes == [(3, 2), (2, 2), (1, 2), (1, 1)]
    text = prompt.messages[1]["content"]
    assert text.count("Caption of") == 2 and "> Frame" not in text  # root and B, whole captions


def test_metadata_budget_drops_transcript_lines_then_description_sentences():
    metadata = {
        "title": "Soup",
        "description": "First sentence here. Second sentence here!\nThird line here.",
        "transcript": [{"time": str(t), "text": f"line {t}"} for t in range(20)],
    }
    full = metadata_yaml(metadata, 0, 20, COUNT, 10**6)
    assert full.count("s: line") == 20 and "description: |-\n  First sentence here. Second" in full
    some = metadata_yaml(metadata, 0, 20, COUNT, COUNT(full) - 10)
    assert 0 < some.count("- '") < 20 and "'0.0s: line 0'" in some and "Third line here." in some
    tight = metadata_yaml(
        metadata, 0, 20, COUNT, COUNT("title: Soup\ndescription: First sentence here.\n") + 2
    )
    assert "transcript" not in tight and "First sentence here." in tight and "Second" not in tight
    assert metadata_yaml(metadata, 0, 20, COUNT, 1) == "title: Soup\n"  # the title always stays


def test_transcript_lines_overlapping_a_span():
    metadata = {
        "transcript": [
            {"time": "0.0", "text": "a"},
            {"time": "5.5", "text": "b  c"},
            {"time": "bad", "text": "x"},
            {"time": "9", "text": "d"},
        ]
    }
    assert transcript_lines(metadata, 6, 8) == ["5.5s: b c"]  # "b c" lasts from 5.5 until 9
    assert transcript_lines(metadata, 0, 5.5) == ["0.0s: a"]
    assert transcript_lines(metadata, 9.5, 10) == ["9.0s: d"]
    assert transcript_lines({}, 0, 10) == []


def test_official_sample_prompts_fit_the_default_budget(official_sample):
    [record] = read_official_json(official_sample)
    builder, children = PromptBuilder(PromptConfig(), COUNT), record.children()
    prompts = [builder.build(record, node, children) for node in select_nodes(record, 4.0)]
    assert max(p.tokens for p in prompts) <= PromptConfig().token_budget
    full = PromptBuilder(PromptConfig(token_budget=10**9), COUNT)
    trimmed = sum(
        p.tokens < full.build(record, n, children).tokens
        for p, n in zip(prompts, select_nodes(record, 4.0), strict=True)
    )
    assert 0 < trimmed < len(prompts) // 10  # a few long nodes are trimmed, most are not


def test_token_estimate():
    assert estimate_tokens("") == 0
    assert estimate_tokens("stir the soup") == 3
    assert estimate_tokens("understanding") == 2 and estimate_tokens("12.50s → 16.00s") == 9
    assert estimate_tokens("搅拌汤") == 3  # no vocabulary knowledge: one token per character


def test_a_local_llm_counts_with_its_own_tokenizer(tiny_tokenizer):
    class Local:
        model_id = "local-model"
        tokenizer = tiny_tokenizer

    counter = TokenCounter.load(None, Local())
    assert counter.name == "tokenizer:local-model" and counter("move the red circle") == 4
    assert TokenCounter.load(None, object()).name == "estimate-v1"
    with pytest.raises(ConfigError, match="refine.prompt.tokenizer '/no/such/tokenizer': cannot load"):
        TokenCounter.load("/no/such/tokenizer")
