"""Configuration: TOML + TRADEWIRE_* variables into one model; every bad value named."""

import pytest

from tradewire.core.config import ConfigError, load_settings


def test_defaults_need_no_file_and_no_variables():
    settings = load_settings(env={})
    assert settings.server.grpc_port == 50051 and settings.server.http_port == 8080
    assert {m.symbol for m in settings.market.mints} >= {"SOL", "USDC", "USDT", "JUP", "BONK"}


def test_environment_overrides_the_file(tmp_path):
    config = tmp_path / "tw.toml"
    config.write_text('[server]\ngrpc_port = 1111\nhttp_port = 2222\n')
    settings = load_settings(config, env={"TRADEWIRE_SERVER__HTTP_PORT": "3333"})
    assert settings.server.grpc_port == 1111 and settings.server.http_port == 3333


def test_every_bad_value_is_reported_with_its_path(tmp_path):
    config = tmp_path / "tw.toml"
    config.write_text('[server]\ngrpc_port = "x"\n[limits]\nburst = 0\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(config, env={"TRADEWIRE_PAPER__LATENCY_MS": "-5", "TRADEWIRE_BOGUS__KEY": "1",
                                   "TRADEWIRE_OTHER_TOOL": "1"})  # (no section: not a setting, not ours)
    message = str(caught.value)
    for path in ("server.grpc_port", "limits.burst", "paper.latency_ms (from TRADEWIRE_PAPER__LATENCY_MS)",
                 "bogus (from TRADEWIRE_BOGUS__*): unknown setting"):
        assert path in message, message
    assert "other_tool" not in message


def test_unreadable_files_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml", env={})
    broken = tmp_path / "broken.toml"
    broken.write_text("[server\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(broken, env={})


def test_market_must_be_consistent():
    with pytest.raises(ConfigError, match="unknown mint"):
        load_settings(env={"TRADEWIRE_MARKET__POOLS": '[{"base": "SOL", "quote": "DOGE", "base_reserve": "1"}]'})


def test_a_mint_must_be_a_public_key():
    bad = '[{"symbol": "X", "address": "not-base58!", "decimals": 6}]'
    with pytest.raises(ConfigError, match="public key"):
        load_settings(env={"TRADEWIRE_MARKET__MINTS": bad})


def test_jwt_section_is_checked_at_load():
    with pytest.raises(ConfigError, match="auth.jwt"):
        load_settings(env={"TRADEWIRE_AUTH__JWT": '{"issuer": "x"}'})


@pytest.mark.parametrize("issuer", ["5", "[1, 2]", '""'])
def test_jwt_issuer_must_be_text(tmp_path, issuer):
    # an issuer that is no string matched no token's: every JWT was refused, nothing said why
    config = tmp_path / "tw.toml"
    config.write_text(f'[auth.jwt]\nissuer = {issuer}\naudience = "a"\njwks_path = "{tmp_path / "jwks.json"}"\n')
    with pytest.raises(ConfigError, match="auth.jwt.*issuer"):
        load_settings(config, env={})


def test_a_check_across_settings_made_in_the_file_names_no_variable(tmp_path):
    config = tmp_path / "tw.toml"
    config.write_text("[server]\nworkers = 2\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, env={})
    message = str(caught.value)
    assert "server.workers = 2 needs shared.redis_url" in message and "TRADEWIRE_" not in message, message


@pytest.mark.parametrize("variable", ["TRADEWIRE_TRACING__OTLP_ENDPOINT", "TRADEWIRE_MARKET_DATA__JUPITER_URL",
                                      "TRADEWIRE_LIVE__RPC_URL", "TRADEWIRE_LIVE__JUPITER_URL",
                                      "TRADEWIRE_LIVE__JITO_URL", "TRADEWIRE_AUDIT__QUESTDB_HTTP_URL"])
def test_an_upstream_url_must_be_one(variable):
    with pytest.raises(ConfigError, match=variable):
        load_settings(env={variable: "not a url"})
    with pytest.raises(ConfigError, match="not an http.s. URL") as caught:
        load_settings(env={variable: "ftp://host/?api-key=s3cr3t"})
    assert "s3cr3t" not in str(caught.value)  # (a URL may hold a key: not echoed)
    assert load_settings(env={variable: "http://127.0.0.1:4318/v1/traces"})


@pytest.mark.parametrize("jwt, owner", [
    ("", "jwt:alice"),  # the default prefix: a JWT configured later would share the name
    ('[auth.jwt]\nissuer = "i"\naudience = "a"\nprincipal_prefix = "sso/"\n'
     'keys = [{kid = "k", algorithm = "HS256", secret = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t"}]\n', "sso/alice"),
])
def test_a_configured_key_may_not_be_owned_by_a_jwt_caller_s_name(tmp_path, jwt, owner):
    config = tmp_path / "tw.toml"
    config.write_text(f'{jwt}[[auth.api_keys]]\nprefix = "tw_abcdefgh"\nsha256 = "{"a" * 64}"\nowner = "{owner}"\n')
    with pytest.raises(ConfigError, match=f"owner '{owner}' is a JWT caller's name"):
        load_settings(config, env={})
