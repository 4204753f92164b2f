"""The provider registry (answer.providers): names written once, each provider's settings sub-model read from
its documented ATTEST_<NAME>_<FIELD> environment variables, and the HTTP contract listing the same names.
Also: the verdict store opens attest.sqlite the one way (attest_sqlite.open_database)."""

from __future__ import annotations

import sqlite3
from types import SimpleNamespace

import pytest
from pydantic import SecretStr, ValidationError

from answer.providers import (
    PROVIDER_NAMES, PROVIDERS, AnthropicProvider, LocalProvider, OpenAIProvider, build_provider, provider_class,
    provider_timeouts,
)
from attest_settings import (
    PROVIDER_SETTINGS, AnthropicSettings, LocalSettings, OpenAISettings, ProviderSettings, Settings,
)

UNKNOWN = "unknown provider 'nope': valid providers are local, openai, anthropic"

# A value for every provider setting, as its environment variable would carry it, and what it parses to.
ENV_SAMPLES: dict[str, tuple[str, object]] = {
    "local_model": ("qwen-test", "qwen-test"),
    "local_strong_model": ("qwen-test-strong", "qwen-test-strong"),
    "local_threads": ("3", 3),
    "local_ctx": ("2048", 2048),
    "local_weights": ("q8_0", "q8_0"),
    "local_first_token_timeout_s": ("11.5", 11.5),
    "local_total_timeout_s": ("22.5", 22.5),
    "openai_base_url": ("http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1"),
    "openai_api_key": ("sk-env", "sk-env"),
    "openai_model": ("gpt-env", "gpt-env"),
    "openai_strong_model": ("gpt-env-strong", "gpt-env-strong"),
    "openai_response_format": ("json_object", "json_object"),
    "openai_first_token_timeout_s": ("3.5", 3.5),
    "openai_total_timeout_s": ("9.5", 9.5),
    "anthropic_base_url": ("http://127.0.0.1:9", "http://127.0.0.1:9"),
    "anthropic_api_key": ("sk-ant-env", "sk-ant-env"),
    "anthropic_model": ("claude-env", "claude-env"),
    "anthropic_strong_model": ("claude-env-strong", "claude-env-strong"),
    "anthropic_version": ("2099-01-01", "2099-01-01"),
    "anthropic_first_token_timeout_s": ("4.5", 4.5),
    "anthropic_total_timeout_s": ("8.5", 8.5),
}


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No ATTEST_ variable from the caller's shell and no attest.toml: only what the test sets."""
    import os

    for key in list(os.environ):
        if key.upper().startswith("ATTEST_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def _plain(value):
    return value.get_secret_value() if isinstance(value, SecretStr) else value


# ---- one list of names --------------------------------------------------------------------------------
def test_the_registry_maps_each_name_to_its_class_and_settings_sub_model():
    assert PROVIDER_NAMES == ("local", "openai", "anthropic")
    assert PROVIDERS == {"local": LocalProvider, "openai": OpenAIProvider, "anthropic": AnthropicProvider}
    assert tuple(PROVIDER_SETTINGS) == PROVIDER_NAMES
    for name, cls in PROVIDERS.items():
        assert cls.name == name and cls.settings_model is PROVIDER_SETTINGS[name]
        assert issubclass(cls.settings_model, ProviderSettings) and cls.settings_model.name == name
    assert (LocalSettings.name, OpenAISettings.name, AnthropicSettings.name) == PROVIDER_NAMES


def _enum_of(schema: dict, components: dict) -> list[str]:
    """The string values a (possibly nullable, possibly $ref'd) JSON-schema property allows."""
    if "$ref" in schema:
        return _enum_of(components[schema["$ref"].rsplit("/", 1)[1]], components)
    if "enum" in schema:
        return list(schema["enum"])
    if "const" in schema:
        return [schema["const"]]
    values: list[str] = []
    for option in schema.get("anyOf", []) + schema.get("oneOf", []):
        values += _enum_of(option, components)
    return values


def test_the_http_contract_lists_exactly_the_registered_providers(tmp_path):
    from api.app import create_app
    from api.metrics import Metrics

    settings = Settings(data_dir=tmp_path / "data")
    # The schema needs no services: a stand-in with the one attribute create_app reads before serving.
    app = create_app(settings, services=SimpleNamespace(metrics=Metrics()), configure_logs=False)
    openapi = app.openapi()
    components = openapi["components"]["schemas"]
    provider = components["QueryRequest"]["properties"]["provider"]
    assert _enum_of(provider, components) == list(PROVIDER_NAMES)
    # ...and the settings accept the same names for the fallback chain.
    chain = Settings.model_json_schema()["properties"]["answer_providers"]["items"]
    assert _enum_of(chain, Settings.model_json_schema().get("$defs", {})) == list(PROVIDER_NAMES)


def test_an_unknown_provider_is_refused_with_the_valid_names(tmp_path):
    from api.schemas import QueryRequest

    settings = Settings(data_dir=tmp_path)
    with pytest.raises(ValueError, match=UNKNOWN):
        build_provider("nope", settings)
    with pytest.raises(ValueError, match=UNKNOWN):
        provider_class("nope")
    with pytest.raises(ValueError, match=UNKNOWN):
        provider_timeouts("nope", settings)
    with pytest.raises(ValueError, match=UNKNOWN):
        settings.provider_settings("nope")
    with pytest.raises(ValidationError) as configured:
        Settings(data_dir=tmp_path, answer_providers=["local", "nope"])
    assert all(f"'{name}'" in str(configured.value) for name in PROVIDER_NAMES)
    with pytest.raises(ValidationError) as requested:
        QueryRequest(question="What is the warranty?", provider="nope")
    assert all(f"'{name}'" in str(requested.value) for name in PROVIDER_NAMES)
    assert QueryRequest(question="What is the warranty?", provider="anthropic").provider == "anthropic"


# ---- each provider's settings sub-model ---------------------------------------------------------------
def test_every_provider_setting_has_a_sample_here():
    fields = {model.flat_field(f) for model in PROVIDER_SETTINGS.values() for f in model.model_fields}
    assert fields == set(ENV_SAMPLES)


@pytest.mark.parametrize("name", PROVIDER_NAMES)
def test_each_sub_model_reads_its_documented_environment_variables(clean_env, name):
    model = PROVIDER_SETTINGS[name]
    for field in model.model_fields:
        clean_env.setenv(f"ATTEST_{model.flat_field(field).upper()}", ENV_SAMPLES[model.flat_field(field)][0])
    settings = Settings()
    config = settings.provider_settings(name)
    assert isinstance(config, model)
    for field in model.model_fields:
        expected = ENV_SAMPLES[model.flat_field(field)][1]
        assert _plain(getattr(config, field)) == expected, field
        # The flat attribute other modules read is the same value.
        assert _plain(getattr(settings, model.flat_field(field))) == expected, field


def test_the_readme_configuration_rows_reach_the_providers(clean_env):
    clean_env.setenv("ATTEST_ANSWER_PROVIDERS", '["anthropic", "openai", "local"]')
    clean_env.setenv("ATTEST_OPENAI_BASE_URL", "http://127.0.0.1:8080/v1")
    clean_env.setenv("ATTEST_OPENAI_API_KEY", "sk-openai")
    clean_env.setenv("ATTEST_ANTHROPIC_API_KEY", "sk-anthropic")
    clean_env.setenv("ATTEST_LOCAL_MODEL", "qwen-fast")
    clean_env.setenv("ATTEST_LOCAL_STRONG_MODEL", "qwen-strong")
    settings = Settings()
    assert settings.answer_providers == ["anthropic", "openai", "local"]

    openai = build_provider("openai", settings)
    assert openai.base_url == "http://127.0.0.1:8080/v1"
    assert openai._headers()["authorization"] == "Bearer sk-openai"
    anthropic = build_provider("anthropic", settings)
    assert anthropic._headers()["x-api-key"] == "sk-anthropic"
    assert anthropic._headers()["anthropic-version"] == "2023-06-01"  # the default, from Settings
    local = build_provider("local", settings)
    assert local.config.model == "qwen-fast" and local.config.strong_model == "qwen-strong"
    assert local.model_for("fast") == "qwen-fast"


def test_defaults_and_constructor_arguments_reach_the_sub_models(tmp_path):
    settings = Settings(data_dir=tmp_path, openai_model="gpt-x", openai_strong_model=None,
                        anthropic_strong_model="claude-strong", anthropic_total_timeout_s=12)
    assert settings.provider_settings("openai").base_url == "https://api.openai.com/v1"
    assert build_provider("openai", settings).model_for("strong") == "gpt-x"  # no strong model: the fast one
    assert build_provider("anthropic", settings).model_for("strong") == "claude-strong"
    assert provider_timeouts("anthropic", settings) == (8.0, 12.0)
    assert provider_timeouts("local", settings) == (settings.local_first_token_timeout_s,
                                                    settings.local_total_timeout_s)
    with pytest.raises(ValidationError):  # limits stay where the flat field declares them
        Settings(data_dir=tmp_path, openai_first_token_timeout_s=0)


def test_sub_models_are_read_only(tmp_path):
    config = Settings(data_dir=tmp_path).provider_settings("local")
    with pytest.raises(ValidationError):
        config.model = "another"


# ---- the verdict store opens attest.sqlite the one way ------------------------------------------------
def _verdict(claim, sentence=0):
    return SimpleNamespace(claim=claim, sentence=sentence, evidence_ids=["c1"], cited_ids=["c1"],
                           signals={"verifier_logit": 1.0}, score=0.9, threshold=0.5, supported=True,
                           citation="ok")


def test_the_verdict_store_uses_open_database_and_stores_an_answer_all_or_nothing(tmp_path):
    from grounding.store import VerdictStore

    path = tmp_path / "data" / "attest.sqlite"
    store = VerdictStore(path)
    try:
        (mode,) = store._conn.one("PRAGMA journal_mode")  # attest_db opens SQLite through open_database
        (busy,) = store._conn.one("PRAGMA busy_timeout")
        assert mode == "wal" and busy == 5000 and store._conn.dialect == "sqlite"

        store.record("req_1", [_verdict("First claim."), _verdict("Second claim.", 1)], "served", "low",
                     "minilm-verifier", "grounding@2")
        rows = store.for_request("req_1")
        assert [(r["claim"], r["sentence"], r["decision"]) for r in rows] == [
            ("First claim.", 0, "served"), ("Second claim.", 1, "served")]

        with pytest.raises(sqlite3.IntegrityError):  # the second row breaks NOT NULL: neither is kept
            store.record("req_2", [_verdict("Kept?"), _verdict(None)], "served", "low", "m", "p")
        assert store.for_request("req_2") == []
        store.record("req_3", [_verdict("After the failure.")], "rejected", "high", "m", "p")
        assert [r["claim"] for r in store.for_request("req_3")] == ["After the failure."]
    finally:
        store.close()
    with sqlite3.connect(path) as db:  # visible to another connection (committed)
        assert db.execute("SELECT COUNT(*) FROM grounding_verdicts").fetchone() == (3,)
