"""The endpoint's temperature when a request sends none: the served model's own default, reported in /v1/models as
La Plateforme reports `default_model_temperature` (its docs: "varies depending on the model … call /models")."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from helpers import endpoint as srv
from helpers.endpoint.app import FALLBACK_TEMPERATURE, default_temperature
from helpers.settings import DEFAULT_LOCAL_EMBED_MODEL


def model_with(**config):
    return SimpleNamespace(generation_config=SimpleNamespace(**config))


def test_the_publishers_generation_config_decides():
    assert default_temperature(model_with(do_sample=True, temperature=0.15)) == 0.15
    assert default_temperature(model_with(do_sample=False, temperature=1.0)) == 0.0  # greedy by its config


def test_a_config_transformers_wrote_itself_or_none_falls_back():
    assert default_temperature(model_with(_from_model_config=True, do_sample=False)) == FALLBACK_TEMPERATURE
    assert default_temperature(SimpleNamespace()) == FALLBACK_TEMPERATURE
    assert default_temperature(None) == FALLBACK_TEMPERATURE


@pytest.fixture(scope="module")
def url():
    return srv.ensure_server(model="standin", embed_model=DEFAULT_LOCAL_EMBED_MODEL, device="cpu")


def test_models_report_the_default_the_chat_endpoint_uses(url):
    from mistralai.client import Mistral

    engine = srv.running_engine(url)
    cards = Mistral(api_key="unused", server_url=url).models.list().data
    chat = [c for c in cards if c.capabilities.completion_chat]
    expected = default_temperature(engine.model)
    assert chat and all(c.default_model_temperature == expected for c in chat)
    assert all(c.default_model_temperature is None for c in cards if not c.capabilities.completion_chat)


def test_a_request_without_temperature_samples_at_that_default(url):
    from mistralai.client import Mistral

    client = Mistral(api_key="unused", server_url=url)
    expected = default_temperature(srv.running_engine(url).model)
    ask = dict(model="mistral-small-latest", messages=[{"role": "user", "content": "Hi"}], max_tokens=12)
    omitted = [client.chat.complete(**ask, random_seed=s).choices[0].message.content for s in (1, 2)]
    given = [client.chat.complete(**ask, random_seed=s, temperature=expected).choices[0].message.content for s in (1, 2)]
    other = [client.chat.complete(**ask, random_seed=s, temperature=1.5).choices[0].message.content for s in (1, 2)]
    assert omitted == given
    assert other != given  # the comparison can tell temperatures apart (random stand-in weights, 12 tokens)
