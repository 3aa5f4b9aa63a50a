"""helpers.selfhost and helpers.playground_local: loading at every precision, errors that say what to do,
generation knobs, streaming, perplexity/agreement on toy cases, and the playground driven headless."""

from __future__ import annotations

import json
import math
import re
from types import SimpleNamespace

import pytest
import torch

from helpers import embeddings, inference, memory, selfhost
from helpers.course.evals import quality
from helpers.course.evals.quality import TextScore, top1_agreement
from helpers.course.standin import config_checkpoint
from helpers.selfhost import ModelLoadError, load_model


def _need_bnb():
    ok, why = selfhost.bnb_support("cpu")
    if not ok:
        pytest.skip(why)


@pytest.fixture(scope="module")
def standin():
    lm = load_model("standin", "fp32", "cpu")
    yield lm
    selfhost.unload(lm)


# ---------------------------------------------------------------- loading
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16", "int8", "nf4"])
def test_loads_every_precision_on_cpu(precision):
    if precision in memory.QUANTIZED:
        _need_bnb()
    lm = load_model("standin", precision, "cpu")
    try:
        assert lm.precision == precision and lm.device == "cpu" and lm.is_standin
        linear = lm.model.model.layers[0].self_attn.q_proj.weight
        expected = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16,
                    "int8": torch.int8, "nf4": torch.uint8}[precision]
        assert linear.dtype == expected
        assert lm.model.lm_head.weight.dtype in (torch.float32, torch.float16, torch.bfloat16)  # never quantized
        g = inference.generate(lm, "Hello", max_new_tokens=3, min_new_tokens=3)
        assert g.new_tokens == 3
    finally:
        selfhost.unload(lm)


def test_auto_precision_is_fp32_on_cpu(standin):
    assert load_model("standin", "auto", "cpu").precision == "fp32"
    assert selfhost.default_precision("cuda") == "fp16"


def test_quantized_cpu_model_computes_in_the_default_precision():
    _need_bnb()
    lm = load_model("standin", "int8", "cpu")
    try:
        assert lm.compute_dtype == selfhost.default_precision("cpu") == "fp32"
        assert lm.model.model.embed_tokens.weight.dtype == torch.float32
    finally:
        selfhost.unload(lm)


@pytest.mark.parametrize("version, ok", [("0.45.5", False), ("0.46.0", True), ("0.46.0.dev0", False),
                                         ("0.100.1", True), ("1.0.0", True)])
def test_bnb_cpu_support_compares_real_versions(monkeypatch, version, ok):
    import sys

    monkeypatch.setitem(sys.modules, "bitsandbytes", SimpleNamespace(__version__=version))
    supported, why = selfhost.bnb_support("cpu")
    assert supported is ok and version in why
    if not ok:
        assert ">= 0.46" in why and "pip install -U bitsandbytes" in why


def test_standin_is_labelled(standin):
    assert standin.random_weights and standin.label == "standin (stand-in)"
    assert "STAND-IN" in selfhost.banner(standin)


def test_pad_token_is_set(standin):
    assert standin.tokenizer.pad_token_id is not None
    assert inference.generation_kwargs(standin)["pad_token_id"] == standin.tokenizer.pad_token_id


def test_bad_precision_is_refused():
    with pytest.raises(ModelLoadError, match="int3"):
        load_model("standin", "int3", "cpu")


def test_unknown_name_offline():
    with pytest.raises(ModelLoadError, match="smollm2-135m"):
        load_model("no-such-model", "fp32", "cpu")


def test_hub_model_offline_says_use_the_standin(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as info:
        load_model("mistralai/Mistral-7B-Instruct-v0.3-not-cached", "fp32", "cpu")
    assert "LOCAL_MODEL='smollm2-135m'" in str(info.value)


def test_unknown_hub_id_offline_is_a_clear_model_load_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as info:  # not a raw OSError from transformers
        load_model("someone-nonexistent/not-a-model", "fp32", "cpu")
    msg = str(info.value)
    assert "'someone-nonexistent/not-a-model'" in msg and "not in the local cache" in msg
    assert "LOCAL_MODEL='smollm2-135m'" in msg and "local folder" in msg  # says what to do next
    assert isinstance(info.value.__cause__, OSError)  # the original error stays attached for debugging


def test_gated_message_says_accept_licence_and_hf_token():
    import httpx2
    from huggingface_hub.errors import GatedRepoError

    url = "https://huggingface.co/mistralai/Mistral-7B-Instruct-v0.3/resolve/main/config.json"
    gated = GatedRepoError("401 Client Error", response=httpx2.Response(401, request=httpx2.Request("GET", url)))
    try:
        try:
            raise gated
        except GatedRepoError as inner:
            raise OSError("You are trying to access a gated repo.") from inner
    except OSError as exc:
        err = selfhost.explain_load_error(exc, "mistralai/Mistral-7B-Instruct-v0.3")
    assert "accept the licence" in str(err) and "HF_TOKEN" in str(err)
    assert "LOCAL_MODEL='config:mistral-7b-instruct-v0.3'" in str(err) and "LOCAL_MODEL='smollm2-135m'" in str(err)
    assert "huggingface.co/mistralai/Mistral-7B-Instruct-v0.3" in str(err)


def test_oom_message_says_needed_free_and_next_precision():
    from helpers.loadspec import _bare

    cfg = memory.load_config("mistral-7b-instruct-v0.3")
    msg = _bare("config:mistral-7b-instruct-v0.3", "fp16", "fp16", cfg, "cpu").oom_message(12 * memory.GiB)
    assert "14.50 GB" in msg and "12.00 GiB" in msg and "precision='int8'" in msg and "7.52 GB" in msg
    assert "smallest" in _bare("x/y", "nf4", "fp32", cfg, "cpu").oom_message(1)


def test_preflight_refuses_a_model_that_cannot_fit(monkeypatch):
    monkeypatch.setattr(memory, "free_memory_bytes", lambda device: 2 * memory.GiB)
    with pytest.raises(ModelLoadError, match=r"need ≈28\.99 GB .* Try precision='fp16'"):
        load_model("config:mistral-7b-instruct-v0.3", "fp32", "cpu")


def test_unknown_config_name():
    with pytest.raises(ModelLoadError, match="mistral-7b-instruct-v0.3"):
        load_model("config:mistral-70b", "fp32", "cpu")


def _tiny_config(tmp_path, vocab):
    folder = tmp_path / f"tiny-{vocab}"
    folder.mkdir()
    cfg = dict(json.loads((memory.configs_dir() / "mistral-7b-instruct-v0.3" / "config.json").read_text()))
    cfg.update(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
               num_attention_heads=2, num_key_value_heads=1)
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def test_config_checkpoint_builds_random_weights_and_the_matching_tokenizer(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    v3 = load_model(f"config:{_tiny_config(tmp_path, 32768)}", "fp32", "cpu")
    assert len(v3.tokenizer) == 32768 and v3.model.config.hidden_size == 32
    assert v3.random_weights and not v3.is_standin and "random weights" in v3.label
    assert selfhost.banner(v3) == selfhost.RANDOM_WEIGHTS_BANNER
    assert inference.generate(v3, "Hi", max_new_tokens=2, min_new_tokens=2).new_tokens == 2
    v1 = load_model(f"config:{_tiny_config(tmp_path, 32000)}", "fp32", "cpu")
    assert len(v1.tokenizer) == 32000
    # v0.1's template has no system role: the classic "roles must alternate" error
    with pytest.raises(Exception, match="alternate"):
        inference.chat_inputs(v1, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])


def test_config_checkpoint_folder_follows_the_config_contents(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    org_a, org_b = tmp_path / "orgA", tmp_path / "orgB"
    org_a.mkdir()
    org_b.mkdir()
    a = _tiny_config(org_a, 32768)
    b = _tiny_config(org_b, 32768)  # same folder name (tiny-32768), different contents
    cfg_b = json.loads((b / "config.json").read_text())
    cfg_b["hidden_size"] = 64
    (b / "config.json").write_text(json.dumps(cfg_b))
    first = config_checkpoint(f"config:{a}", device="cpu")
    assert re.fullmatch(r"config-tiny-32768-[0-9a-f]{10}-seed0", first.name)
    assert config_checkpoint(f"config:{a}", device="cpu") == first  # unchanged config: reused
    other = config_checkpoint(f"config:{b}", device="cpu")
    assert other != first and json.loads((other / "config.json").read_text())["hidden_size"] == 64
    # editing a config in place gives a new checkpoint, never the stale one
    cfg_a = json.loads((a / "config.json").read_text())
    cfg_a["num_hidden_layers"] = 2
    (a / "config.json").write_text(json.dumps(cfg_a))
    edited = config_checkpoint(f"config:{a}", device="cpu")
    assert edited not in (first, other) and json.loads((edited / "config.json").read_text())["num_hidden_layers"] == 2
    assert not [p for p in (tmp_path / "cache").iterdir() if not (p / ".complete").exists()]  # no half-built temps


def test_config_checkpoint_refuses_an_unknown_vocab_before_building(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(ModelLoadError, match=r"32,000 and 32,768"):
        config_checkpoint(f"config:{_tiny_config(tmp_path, 50000)}", device="cpu")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


# ---------------------------------------------------------------- embeddings
def _offline(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read once, at import


def test_unknown_embedder_offline_is_a_clear_model_load_error(monkeypatch):
    _offline(monkeypatch)
    with pytest.raises(ModelLoadError) as info:
        embeddings.load_embedder("someone-nonexistent/not-an-embedder", device="cpu")
    msg = str(info.value)
    assert "'someone-nonexistent/not-an-embedder'" in msg and "not in the local cache" in msg
    assert "LOCAL_EMBED_MODEL='sentence-transformers/all-MiniLM-L6-v2'" in msg and "local folder" in msg
    assert isinstance(info.value.__cause__, OSError)


def test_missing_embedder_folder_says_check_the_spelling(tmp_path):
    with pytest.raises(ModelLoadError, match=r"neither a local folder nor a model on the hub.*LOCAL_EMBED_MODEL"):
        embeddings.load_embedder(str(tmp_path / "no-such-folder"), device="cpu")


def test_default_embedder_loads_offline(monkeypatch):
    _offline(monkeypatch)
    model = embeddings.load_embedder(device="cpu")
    assert model.get_embedding_dimension() == 384


# ---------------------------------------------------------------- generation
def test_greedy_is_deterministic_and_sampling_depends_on_seed(standin):
    a = inference.generate(standin, "Name a colour.", max_new_tokens=8)
    b = inference.generate(standin, "Name a colour.", max_new_tokens=8)
    assert a.token_ids == b.token_ids
    s1 = inference.generate(standin, "Name a colour.", max_new_tokens=8, do_sample=True, temperature=1.5, seed=1)
    s2 = inference.generate(standin, "Name a colour.", max_new_tokens=8, do_sample=True, temperature=1.5, seed=1)
    s3 = inference.generate(standin, "Name a colour.", max_new_tokens=8, do_sample=True, temperature=1.5, seed=2)
    assert s1.token_ids == s2.token_ids != s3.token_ids


def test_chat_inputs_pass_the_attention_mask(standin):
    enc = inference.chat_inputs(standin, "Hello")
    assert enc["attention_mask"].shape == enc["input_ids"].shape and bool(enc["attention_mask"].all())
    text = standin.tokenizer.decode(enc["input_ids"][0])
    assert text.startswith("<s>") and "[INST]" in text and text.rstrip().endswith("[/INST]")


def test_stream_yields_the_same_text_as_generate(standin):
    pieces = list(inference.stream(standin, "Say hi", max_new_tokens=10))
    assert len(pieces) >= 1
    assert "".join(pieces).strip() == inference.generate(standin, "Say hi", max_new_tokens=10).text.strip()


def test_tokens_per_second_is_positive(standin):
    assert inference.tokens_per_second(standin, new_tokens=4, repeats=1) > 0


# ---------------------------------------------------------------- perplexity and agreement on toy models
class _Toy(torch.nn.Module):
    """Uniform logits (perplexity = vocab size), or an oracle that puts all mass on the true next token."""

    def __init__(self, vocab: int, oracle: bool):
        super().__init__()
        self.vocab, self.oracle = vocab, oracle
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    @property
    def device(self):
        return self.dummy.device

    def forward(self, input_ids, attention_mask=None):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        if self.oracle:
            nxt = torch.roll(input_ids, -1, dims=1)
            logits.scatter_(2, nxt.unsqueeze(-1), 100.0)
        return SimpleNamespace(logits=logits)


def test_perplexity_of_uniform_logits_is_the_vocab_size(standin):
    lm = SimpleNamespace(model=_Toy(32768, oracle=False), tokenizer=standin.tokenizer)
    score = quality.score_text(lm, "The mistral blows down the Rhône valley.")
    assert score.perplexity == pytest.approx(32768, rel=1e-4)
    assert score.n_tokens == len(standin.tokenizer("The mistral blows down the Rhône valley.")["input_ids"]) - 1


def test_oracle_has_perplexity_one_and_windows_cover_the_text(standin):
    lm = SimpleNamespace(model=_Toy(32768, oracle=True), tokenizer=standin.tokenizer)
    text = "one two three four five six seven eight nine ten " * 3
    whole = quality.score_text(lm, text, window=512)
    assert whole.perplexity == pytest.approx(1.0, abs=1e-6)
    windowed = quality.score_text(lm, text, window=8)
    assert windowed.perplexity == pytest.approx(1.0, abs=1e-6) and windowed.n_tokens < whole.n_tokens


def test_top1_agreement():
    a = TextScore(perplexity=1.0, n_tokens=4, top1=[1, 2, 3, 4])
    assert top1_agreement(a, a) == 1.0
    assert top1_agreement(a, TextScore(1.0, 4, [1, 2, 0, 4])) == 0.75
    with pytest.raises(ValueError):
        top1_agreement(a, TextScore(1.0, 3, [1, 2, 3]))


def test_quantized_model_agrees_mostly_with_full_precision(standin):
    _need_bnb()
    text = (memory.configs_dir().parent / "perplexity_text.txt").read_text()
    base = quality.score_text(standin, text)
    q = load_model("standin", "int8", "cpu")
    try:
        s = quality.score_text(q, text)
    finally:
        selfhost.unload(q)
    assert math.isfinite(s.perplexity) and s.n_tokens == base.n_tokens
    assert top1_agreement(base, s) > 0.5


# ---------------------------------------------------------------- the playground, headless
def test_playground_headless(standin):
    from helpers.playground_local import generation_playground

    pg = generation_playground(standin, prompt="Hello")
    assert pg.controls["temperature"].disabled  # greedy: sampling knobs off
    pg.set(max_new_tokens=5, do_sample=False)
    pg.button.click()
    first = pg.last
    assert first is not None and 1 <= first.new_tokens <= 5 and pg.output.value == first.text
    assert "tokens/s" in pg.stats.value
    pg.button.click()
    assert pg.last.token_ids == first.token_ids  # greedy twice: identical
    pg.set(do_sample=True, temperature=1.2, top_p=0.9, seed=3)
    assert not pg.controls["temperature"].disabled
    pg.button.click()
    assert len(pg.history) == 3
    with pytest.raises(KeyError):
        pg.set(temprature=1.0)


# ---------------------------------------------------------------- GPU
@pytest.mark.gpu
def test_fp16_on_cuda_reports_allocated_memory():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU: this checks CUDA memory accounting")
    lm = load_model("standin", "fp16", "cuda")
    try:
        report = selfhost.memory_report(lm)
        assert report["cuda_allocated_bytes"] >= report["footprint_bytes"] * 0.9
        assert abs(report["estimate error %"]) < 1
    finally:
        selfhost.unload(lm)


def test_bf16_on_a_simulated_t4_is_refused_with_the_reason(fake_t4):
    from helpers import selfhost

    assert selfhost.default_precision("cuda") == "fp16"  # what precision="auto" loads
    with pytest.raises(ModelLoadError, match=r"Tesla T4 has no native bf16 \(compute capability 7\.5.*'fp16'"):
        load_model("standin", precision="bf16", device="cuda")


def test_bf16_on_a_simulated_a100_passes_the_check(fake_a100):
    from helpers import selfhost

    assert selfhost.pick_precision("bf16", "cuda") == "bf16"  # no error: native bf16
