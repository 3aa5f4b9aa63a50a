"""The offline stand-in: deterministic, loads through from_pretrained, real Mistral v3 tokenizer and template."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from jinja2 import TemplateError
from transformers import AutoModelForCausalLM, AutoTokenizer

from helpers import paths, selfhost
from helpers.course import standin


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("standin")
    return root, standin.standin_path(seed=0, root=root)


def test_same_seed_same_weights(built, tmp_path):
    root, path = built
    again = standin.standin_path(seed=0, root=tmp_path)
    a = AutoModelForCausalLM.from_pretrained(path).state_dict()
    b = AutoModelForCausalLM.from_pretrained(again).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_other_seed_other_weights(built, tmp_path):
    _, path = built
    other = standin.standin_path(seed=1, root=tmp_path)
    a = AutoModelForCausalLM.from_pretrained(path).model.embed_tokens.weight
    b = AutoModelForCausalLM.from_pretrained(other).model.embed_tokens.weight
    assert not torch.equal(a, b)


def test_cached_build_is_reused(built):
    root, path = built
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert standin.standin_path(seed=0, root=root) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp


def test_half_built_folder_is_rebuilt(tmp_path):
    broken = tmp_path / f"standin-v{standin.STANDIN_VERSION}-seed0"
    broken.mkdir()
    (broken / "config.json").write_text("{}")  # no weights: an interrupted build
    path = standin.standin_path(seed=0, root=tmp_path)
    assert (path / "model.safetensors").exists()


def test_loads_through_from_pretrained_as_mistral(built):
    _, path = built
    model = AutoModelForCausalLM.from_pretrained(path)
    assert type(model).__name__ == "MistralForCausalLM"
    assert model.config.vocab_size == 32768
    assert model.config.num_key_value_heads < model.config.num_attention_heads  # GQA like the real one


def test_tokenizer_is_mistral_v3(built):
    _, path = built
    tok = AutoTokenizer.from_pretrained(path)
    assert len(tok) == 32768
    assert tok.convert_tokens_to_ids(["<s>", "</s>", "[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]"]) == [
        1, 2, 3, 4, 5, 6,
    ]
    # the same ids as mistral-common's own v3 tokenizer
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    reference = MistralTokenizer.from_file(str(paths.tokenizer_source())).instruct_tokenizer.tokenizer
    text = "Which two payment amounts are closest?"
    assert tok(text).input_ids == reference.encode(text, bos=True, eos=False)


def test_chat_template_renders_turns_like_mistral_common(built):
    _, path = built
    tok = AutoTokenizer.from_pretrained(path)
    messages = [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Italy?"},
    ]
    text = tok.apply_chat_template(messages, tokenize=False)
    assert text == "<s>[INST] What is the capital of France?[/INST] Paris.</s>[INST] And of Italy?[/INST]"

    from mistral_common.protocol.instruct.messages import AssistantMessage, UserMessage
    from mistral_common.protocol.instruct.request import ChatCompletionRequest
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    mt = MistralTokenizer.from_file(str(paths.tokenizer_source()))
    expected = mt.encode_chat_completion(ChatCompletionRequest(messages=[
        UserMessage(content=messages[0]["content"]), AssistantMessage(content="Paris."),
        UserMessage(content=messages[2]["content"]),
    ])).tokens
    ids = tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    assert list(ids) == expected


def test_v1_template_reproduces_the_alternation_trap(built):
    _, path = built
    tok = AutoTokenizer.from_pretrained(path)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    with pytest.raises(TemplateError, match="roles must alternate"):
        tok.apply_chat_template(messages, tokenize=False, chat_template=selfhost.chat_template("mistral_v1"))
    # the v3 template folds the system message into the user turn instead
    assert "Be brief." in tok.apply_chat_template(messages, tokenize=False)


def test_unknown_template_is_clear():
    with pytest.raises(FileNotFoundError, match="mistral_v3"):
        selfhost.chat_template("nope")


def test_greedy_generation_is_deterministic(built):
    _, path = built
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    enc = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out1 = model.generate(**enc, max_new_tokens=8, do_sample=False, pad_token_id=tok.eos_token_id)
    out2 = model.generate(**enc, max_new_tokens=8, do_sample=False, pad_token_id=tok.eos_token_id)
    assert torch.equal(out1, out2) and out1.shape[1] > enc["input_ids"].shape[1]


def test_banner_says_text_is_meaningless(capsys):
    text = standin.banner(display=True)
    assert "meaningless" in text
    assert "meaningless" in capsys.readouterr().out


def test_is_standin():
    assert standin.is_standin("standin")
    assert standin.is_standin("/x/standin-v1-seed0")
    assert not standin.is_standin("mistralai/Mistral-7B-Instruct-v0.3")


def test_minilm_offline_copy_exists():
    path = paths.minilm_path()
    assert (path / "model.safetensors").exists() and (path / "modules.json").exists()


def test_atomic_folder_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "thing"
    with pytest.raises(RuntimeError):
        with paths.atomic_folder(target) as tmp:
            (tmp / "half.bin").write_text("x")
            raise RuntimeError("interrupted")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_folder_keeps_an_existing_target(tmp_path):
    target = tmp_path / "thing"
    target.mkdir()
    (target / "theirs.txt").write_text("first")
    with paths.atomic_folder(target) as tmp:
        (tmp / "mine.txt").write_text("second")
    assert sorted(p.name for p in target.iterdir()) == ["theirs.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thing"]


def test_atomic_folder_loses_a_race_gracefully(tmp_path, monkeypatch):
    """Two processes build the same folder (make test's two workers converting SmolLM2): the second to finish finds
    the first's folder in place at the rename and keeps it."""
    import os

    target = tmp_path / "thing"
    real_replace = os.replace

    def other_process_wins(src, dst):
        Path(dst).mkdir()
        (Path(dst) / "theirs.txt").write_text("first")
        return real_replace(src, dst)  # a non-empty target: OSError, as on Linux

    monkeypatch.setattr(paths.os, "replace", other_process_wins)
    with paths.atomic_folder(target) as tmp:
        (tmp / "mine.txt").write_text("second")
    assert sorted(p.name for p in target.iterdir()) == ["theirs.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thing"]


def test_v1_tokenizer_has_32000_tokens_and_the_strict_template(tmp_path):
    standin.build_mistral_tokenizer(tmp_path, "v1")
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert len(tok) == 32000
    with pytest.raises(TemplateError, match="roles must alternate"):
        tok.apply_chat_template([{"role": "system", "content": "x"}, {"role": "user", "content": "y"}], tokenize=False)


def test_unknown_tokenizer_version_is_clear(tmp_path):
    with pytest.raises(ValueError, match="have \\['v1', 'v3'\\]"):
        standin.build_mistral_tokenizer(tmp_path, "v9")
