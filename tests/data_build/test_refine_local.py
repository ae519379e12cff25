"""The refine stage on local transformers models: a tiny random-init Llama with a byte-level BPE
tokenizer decoding under the answer's JSON schema (xgrammar), and the same model unconstrained."""

import json
from importlib.metadata import version

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from action100m.backends import GenerationConfig
from action100m.backends.transformers_backend import TransformersLLM, bounded_grammar
from action100m.refine.answer import ANNOTATION_SCHEMA, AnswerRules, parse_answer
from action100m.tiny.backends import CHAT_TEMPLATE, tiny_gpt_oss, tiny_llm
from action100m.tiny.models import SPECIAL_TOKENS, tiny_llama
from data_build.refine import RefineConfig, refine_records
from tests.data_build.test_refine import SELECTED, node_named, small_record

# A random model's text breaks every form rule; the schema is what constrained decoding promises.
NO_RULES = AnswerRules(
    max_action_brief_words=0, base_form_action=False, no_timestamps=False, english_only=False
)
CONVERSATIONS = [[{"role": "user", "content": f"segment {i}"}] for i in range(3)]


def byte_level_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained in-process (as GPT-OSS's and Llama 3's are byte-level BPE)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = [
        json.dumps({"summary": {"brief": "a person", "detailed": "x"}, "action": {"actor": "y"}}),
        "a person stirs the mixture in a bowl and speaks to the camera",
    ]
    tokenizer.train_from_iterator(corpus, trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKENS)
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


@pytest.fixture(scope="module")
def bpe_llama():
    tokenizer = byte_level_tokenizer()
    model = tiny_llama(tokenizer, seed=0)
    # As the project's tiny models do: an untrained model would often stop at once.
    model.generation_config.suppress_tokens = tokenizer.all_special_ids
    return model, tokenizer


def local_llm(bpe_llama, max_new_tokens: int, **generation) -> TransformersLLM:
    model, tokenizer = bpe_llama
    config = GenerationConfig(max_new_tokens=max_new_tokens, **generation)
    return TransformersLLM(model, tokenizer, "tiny-bpe-llama", config)


def test_tiny_random_llm_under_the_schema_always_answers_schema_valid_json(bpe_llama):
    records = [small_record("v1"), small_record("v2")]
    result = refine_records(records, RefineConfig(rounds=2, rules=NO_RULES), local_llm(bpe_llama, 160))
    assert (result.annotated, result.llm_calls) == (8, 16) and result.failures == []
    for record in records:
        for name in SELECTED:
            rounds = node_named(record, name).provenance["refine"]["rounds"]
            assert [(r["status"], r["attempts"]) for r in rounds] == [("valid", 1)] * 2  # never a repair


@pytest.mark.parametrize("generation", [{}, {"do_sample": True, "temperature": 1.0, "seed": 3}])
def test_batched_replies_are_valid_and_equal_one_at_a_time(bpe_llama, generation):
    llm = local_llm(bpe_llama, 160, **generation)
    batched = llm.complete(CONVERSATIONS, ANNOTATION_SCHEMA)
    for reply in batched:
        parse_answer(reply, NO_RULES)
        assert reply == json.dumps(json.loads(reply), ensure_ascii=False)  # one layout, no free whitespace
    if not generation:  # greedy: each row's matcher is its own, left padding changes nothing
        assert batched == [llm.complete([c], ANNOTATION_SCHEMA)[0] for c in CONVERSATIONS]
        assert batched == llm.complete(CONVERSATIONS, ANNOTATION_SCHEMA)  # same input, same bytes


def test_the_grammar_closes_the_json_within_a_tight_token_budget(bpe_llama):
    # The shortest reply in characters, its end-of-sequence token and one more character per string.
    tightest = len(_shortest_reply()) + 1 + 5
    assert bounded_grammar(ANNOTATION_SCHEMA, tightest - 1) is None
    for budget in (tightest, tightest + 7):
        for reply in local_llm(bpe_llama, budget).complete(CONVERSATIONS, ANNOTATION_SCHEMA):
            parse_answer(reply, NO_RULES)
    # Without a schema the same backend generates freely.
    assert not local_llm(bpe_llama, 16).complete(CONVERSATIONS[:1])[0].startswith('{"summary"')


def _shortest_reply() -> str:
    one = json.dumps("x")
    return (
        f'{{"summary": {{"brief": {one}, "detailed": {one}}}, '
        f'"action": {{"brief": {one}, "detailed": {one}, "actor": {one}}}}}'
    )


def test_a_budget_too_small_for_the_schema_fails_clearly(bpe_llama):
    llm = local_llm(bpe_llama, 20)
    assert bounded_grammar(ANNOTATION_SCHEMA, 20) is None  # no room: the schema's own grammar
    for reply in llm.complete(CONVERSATIONS, ANNOTATION_SCHEMA):
        assert "max_new_tokens (20) ran out inside the JSON" in reply.reason


def test_without_the_schema_bad_replies_are_retried_then_recorded(bpe_llama):
    record = small_record()
    cfg = RefineConfig(structured_output=False, rules=NO_RULES)
    result = refine_records([record], cfg, local_llm(bpe_llama, 16))
    assert result.annotated == 0 and result.llm_calls == 4 * 3  # a draft and two repairs each
    assert [f.node_id for f in result.failures] == sorted(f"v1-{name}" for name in SELECTED)
    for failure in result.failures:
        assert "no JSON object" in failure.reason and failure.raw_reply and not failure.retryable


def test_a_word_level_tokenizer_cannot_spell_json_and_says_so():
    model, tokenizer = tiny_llm()
    llm = TransformersLLM(model, tokenizer, "tiny-llama", GenerationConfig(max_new_tokens=8))
    result = refine_records([small_record()], RefineConfig(rounds=1, max_repairs=0), llm)
    assert len(result.failures) == 4 and result.llm_calls == 4
    assert all("cannot spell the JSON schema" in f.reason for f in result.failures)


def test_harmony_models_stay_unconstrained_and_say_so():
    model, tokenizer = tiny_gpt_oss()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|channel|>"]})
    llm = TransformersLLM(model, tokenizer, "tiny-gpt-oss", GenerationConfig(max_new_tokens=8))
    assert not llm.enforces_json_schema and llm.describe()["structured_output"] == "off (harmony)"


def test_describe_names_the_engine_so_the_cache_key_follows_it(bpe_llama):
    llm = local_llm(bpe_llama, 160)
    assert llm.enforces_json_schema
    assert llm.describe()["structured_output"] == f"xgrammar-{version('xgrammar')}"


def test_bounded_grammar_shares_the_budget_among_the_strings():
    grammar = bounded_grammar(ANNOTATION_SCHEMA, 160)
    share = (160 - 1 - len(_shortest_reply())) // 5
    assert grammar.count(f"char{{1,{1 + share}}}") == 5
    assert (
        bounded_grammar({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}, 160)
        is None
    )
