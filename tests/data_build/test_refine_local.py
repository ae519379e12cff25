"""The refine stage on local transformers models: a tiny random-init Llama decoding under the answer's
JSON schema (our constrained decoder), and the same model unconstrained (validate and retry)."""

import json

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from action100m.backends import GenerationConfig
from action100m.backends.constrained import (
    ConstrainedTransformersLLM,
    UnsupportedSchema,
    _Automaton,
    constrain,
    skeleton,
)
from action100m.backends.tiny import CHAT_TEMPLATE, tiny_llm
from action100m.backends.transformers_backend import TransformersLLM
from action100m.refine_answer import ANNOTATION_SCHEMA, AnswerRules, validate_answer
from action100m.tiny_models import SPECIAL_TOKENS, tiny_llama
from data_build.refine import RefineConfig, refine_records
from tests.data_build.test_refine import SELECTED, node_named, small_record

# A random model's text breaks every form rule; the schema is what constrained decoding promises.
NO_RULES = AnswerRules(
    max_action_brief_words=0, base_form_action=False, no_timestamps=False, english_only=False
)


def byte_level_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained in-process (as GPT-OSS's and Llama 3's are byte-level BPE)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=list(SPECIAL_TOKENS.values()),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    corpus = [json.dumps({"summary": {"brief": "a person", "detailed": "x"}, "action": {"actor": "y"}}),
              "a person stirs the mixture in a bowl and speaks to the camera"]  # fmt: skip
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


def local_llm(bpe_llama, max_new_tokens: int) -> TransformersLLM:
    model, tokenizer = bpe_llama
    return TransformersLLM(
        model, tokenizer, "tiny-bpe-llama", GenerationConfig(max_new_tokens=max_new_tokens)
    )


def test_tiny_random_llm_under_the_schema_always_answers_schema_valid_json(bpe_llama):
    records = [small_record("v1"), small_record("v2")]
    result = refine_records(records, RefineConfig(rounds=2, rules=NO_RULES), local_llm(bpe_llama, 160))
    assert (result.annotated, result.llm_calls) == (8, 16) and result.failures == []
    for record in records:
        for name in SELECTED:
            rounds = node_named(record, name).provenance["refine"]["rounds"]
            assert [(r["status"], r["attempts"]) for r in rounds] == [("valid", 1)] * 2  # never a repair


def test_the_constraint_closes_the_json_within_a_tight_token_budget(bpe_llama):
    automaton = _Automaton(tuple(skeleton(ANNOTATION_SCHEMA)))
    shortest = automaton.remaining(automaton.start())
    for budget in (shortest, shortest + 7):
        llm = constrain(local_llm(bpe_llama, budget), ANNOTATION_SCHEMA)
        assert isinstance(llm, ConstrainedTransformersLLM) and llm.enforces_json_schema
        replies = llm.complete(
            [[{"role": "user", "content": f"segment {i}"}] for i in range(3)], ANNOTATION_SCHEMA
        )
        for reply in replies:
            validate_answer(json.loads(reply), NO_RULES)
    assert llm.describe()["constrained_decoding"] == "json-skeleton-v1"
    # Without a schema the same backend generates freely.
    assert not llm.complete([[{"role": "user", "content": "hello"}]])[0].startswith('{"summary"')


def test_without_the_constraint_bad_replies_are_retried_then_recorded(bpe_llama):
    record = small_record()
    cfg = RefineConfig(structured_output=False, rules=NO_RULES)
    result = refine_records([record], cfg, local_llm(bpe_llama, 16))
    assert result.annotated == 0 and result.llm_calls == 4 * 3  # a draft and two repairs each
    assert [f.node_id for f in result.failures] == sorted(f"v1-{name}" for name in SELECTED)
    for failure in result.failures:
        assert "no JSON object" in failure.reason and failure.raw_reply and not failure.retryable


def test_a_word_level_tokenizer_cannot_spell_json_so_it_is_validated_instead():
    model, tokenizer = tiny_llm()
    llm = TransformersLLM(model, tokenizer, "tiny-llama", GenerationConfig(max_new_tokens=8))
    assert constrain(llm, ANNOTATION_SCHEMA) is llm
    result = refine_records([small_record()], RefineConfig(rounds=1, max_repairs=0), llm)
    assert len(result.failures) == 4 and result.llm_calls == 4


def test_skeleton_and_automaton():
    assert skeleton(ANNOTATION_SCHEMA) == [
        '{"summary": {"brief": "', '", "detailed": "', '"}, "action": {"brief": "', '", "detailed": "',
        '", "actor": "', '"}}',
    ]  # fmt: skip
    automaton = _Automaton(tuple(skeleton(ANNOTATION_SCHEMA)))
    state = automaton.walk(automaton.start(), '{"summary": {"brief": "')
    assert (
        state == ("slot", 0, 0) and automaton.remaining(state) == automaton.remaining(automaton.start()) - 23
    )
    assert automaton.walk(state, " leading space") is None and automaton.walk(state, '"') is None  # no blanks
    assert automaton.walk(state, 'a \\"quoted\\" \\u00e9 \\n') == ("slot", 0, 1)
    assert automaton.walk(state, "a\\x") is None and automaton.walk(state, "a\nb") is None
    done = automaton.walk(
        state, 'x", "detailed": "y"}, "action": {"brief": "z", "detailed": "w", "actor": "v"}}'
    )
    assert done == ("accept",) and automaton.remaining(done) == 0


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": False},
        {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False},
        {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
        {"type": "object", "properties": {"a": {"type": "string", "maxLength": 3}}, "required": ["a"],
         "additionalProperties": False},
    ],
)  # fmt: skip
def test_schemas_beyond_required_strings_are_not_enforced(schema, bpe_llama):
    with pytest.raises(UnsupportedSchema):
        skeleton(schema)
    llm = local_llm(bpe_llama, 8)
    assert constrain(llm, schema) is llm
