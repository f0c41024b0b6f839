"""Configuration as an operator writes it: values the gateway could not use are refused at load,
named by their setting (and variable), without echoing secrets; variables mean what they say."""

from __future__ import annotations

import pytest

from tradewire.core.config import ConfigError, load_settings
from tradewire.core.metrics import Metrics

JWT = ('[auth.jwt]\nissuer = "i"\naudience = "a"\n'
       'keys = [{kid = "k", algorithm = "HS256", secret = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t"}]\n')
SHA = "a" * 64


def refused(env: dict[str, str] | None = None, toml: str | None = None, tmp_path=None) -> str:
    path = None
    if toml is not None:
        path = tmp_path / "tw.toml"
        path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env=env or {})
    return str(caught.value)


def loaded(env: dict[str, str] | None = None, toml: str | None = None, tmp_path=None):
    path = None
    if toml is not None:
        path = tmp_path / "tw.toml"
        path.write_text(toml)
    return load_settings(path, env=env or {})


# -- the two listeners ---------------------------------------------------------------------------

@pytest.mark.parametrize("grpc_host, http_host", [("0.0.0.0", "0.0.0.0"), ("127.0.0.1", "127.0.0.1"),
                                                  ("0.0.0.0", "127.0.0.1"), ("::", "10.1.2.3")])
def test_one_port_for_both_listeners_is_refused(grpc_host, http_host):
    # (it failed with "cannot listen for HTTP ...: Address already in use", the gateway's own gRPC)
    message = refused({"TRADEWIRE_SERVER__GRPC_HOST": grpc_host, "TRADEWIRE_SERVER__HTTP_HOST": http_host,
                       "TRADEWIRE_SERVER__GRPC_PORT": "9000", "TRADEWIRE_SERVER__HTTP_PORT": "9000"})
    assert "server (from TRADEWIRE_SERVER__*): grpc_port and http_port are both 9000" in message, message


def test_one_port_on_two_addresses_and_two_ephemeral_ports_are_fine():
    assert loaded({"TRADEWIRE_SERVER__GRPC_HOST": "127.0.0.1", "TRADEWIRE_SERVER__HTTP_HOST": "127.0.0.2",
                   "TRADEWIRE_SERVER__GRPC_PORT": "9000", "TRADEWIRE_SERVER__HTTP_PORT": "9000"})
    assert loaded({"TRADEWIRE_SERVER__GRPC_PORT": "0", "TRADEWIRE_SERVER__HTTP_PORT": "0"})


@pytest.mark.parametrize("setting, value", [("MAX_BODY_BYTES", "99999999999999999999"),
                                            ("MAX_BODY_BYTES", str(2**30)),
                                            ("MAX_HEADER_BYTES", "99999999999999"),
                                            ("MAX_HEADERS", "9999999999")])
def test_listener_limits_grpcio_cannot_take_are_refused_by_name(setting, value):
    # (the gateway failed to start with "Python int too large to convert to C long", no setting named)
    message = refused({f"TRADEWIRE_SERVER__{setting}": value})
    assert f"server.{setting.lower()} (from TRADEWIRE_SERVER__{setting}): Input should be less than" in message


def test_the_largest_limits_accepted_fit_grpcio_s_32_bit_options():
    from tradewire.core.config import ServerConfig
    from tradewire.gateway.grpc_server import _metadata_limit

    fields = ServerConfig.model_fields
    most = {name: next(m.le for m in fields[name].metadata if getattr(m, "le", None) is not None)
            for name in ("max_body_bytes", "max_header_bytes", "max_headers")}
    assert 2 * most["max_body_bytes"] <= 2**31 - 1
    assert _metadata_limit(most["max_header_bytes"], most["max_headers"]) <= 2**31 - 1


# -- API keys in the configuration ---------------------------------------------------------------

def test_a_configured_key_s_prefix_is_checked_at_load_without_echoing_it(tmp_path):
    full_key = "tw_abcdefgh_" + "Zx9" * 12  # the whole key pasted where its prefix belongs
    message = refused(toml=f'[[auth.api_keys]]\nprefix = "{full_key[:32]}"\nsha256 = "{SHA}"\nowner = "alice"\n',
                      tmp_path=tmp_path)
    assert "auth.api_keys.0.prefix: expected a key prefix like 'tw_ab12cd34'" in message, message
    assert full_key[12:32] not in message
    message = refused(toml=f'[[auth.api_keys]]\nprefix = "tw_ABCDEFGH"\nsha256 = "{SHA}"\nowner = "alice"\n',
                      tmp_path=tmp_path)
    assert "auth.api_keys.0.prefix" in message and "8 lowercase letters or digits" in message, message


@pytest.mark.parametrize("scopes, said", [('["read", "god"]', "unknown scope(s) god"),
                                          ("[]", "a key needs at least one scope")])
def test_a_configured_key_s_scopes_are_checked_at_load(tmp_path, scopes, said):
    message = refused(toml=f'[[auth.api_keys]]\nprefix = "tw_abcdefgh"\nsha256 = "{SHA}"\nowner = "alice"\n'
                           f"scopes = {scopes}\n", tmp_path=tmp_path)
    assert f"auth.api_keys.0.scopes: {said}" in message, message


def test_a_key_configured_twice_is_refused_at_load(tmp_path):
    entry = '[[auth.api_keys]]\nprefix = "{}"\nsha256 = "' + SHA + '"\nowner = "{}"\n'
    message = refused(toml=entry.format("tw_abcdefgh", "alice") + entry.format("abcdefgh", "bob"), tmp_path=tmp_path)
    assert "auth: api_keys: tw_abcdefgh is configured twice" in message, message


# -- [auth.jwt] from variables -------------------------------------------------------------------

def test_jwt_settings_from_variables_take_their_types(tmp_path):
    # ("30" was refused with "'<' not supported between instances of 'str' and 'int'", "16384" made
    # the start-up fail the same way, and "false" left require_kid on)
    settings = loaded({"TRADEWIRE_AUTH__JWT__LEEWAY_S": "30", "TRADEWIRE_AUTH__JWT__REQUIRE_KID": "false",
                       "TRADEWIRE_AUTH__JWT__MAX_TOKEN_BYTES": "16384",
                       "TRADEWIRE_AUTH__JWT__JWKS_CHECK_INTERVAL_S": "2.5"}, JWT, tmp_path)
    jwt = settings.auth.jwt
    assert (jwt["leeway_s"], jwt["require_kid"], jwt["max_token_bytes"], jwt["jwks_check_interval_s"]) == (
        30.0, False, 16384, 2.5)
    from tradewire.core.auth.jwt_verifier import JwtConfig

    assert JwtConfig.from_mapping(jwt).require_kid is False


@pytest.mark.parametrize("variable, value, said", [("LEEWAY_S", "soon", "leeway_s: Input should be a valid number"),
                                                   ("REQUIRE_KID", "maybe", "require_kid: Input should be a valid "
                                                                            "boolean")])
def test_a_jwt_setting_of_the_wrong_type_is_named(tmp_path, variable, value, said):
    message = refused({f"TRADEWIRE_AUTH__JWT__{variable}": value}, JWT, tmp_path)
    assert f"auth.jwt (from TRADEWIRE_AUTH__JWT__*): {said}" in message, message
    assert "s3cr3t" not in message


# -- settings keyed by mint ----------------------------------------------------------------------

def test_a_variable_for_one_mint_s_entry_changes_that_entry_only():
    # (TRADEWIRE_PAPER__STARTING_BALANCES__SOL made the balances {"sol": 5}: USDC's was gone and
    # every paper trade then failed, KeyError 'sol'; a price was set for "sol", SOL's left as it was)
    settings = loaded({"TRADEWIRE_PAPER__STARTING_BALANCES__SOL": "5", "TRADEWIRE_MARKET__PRICES_USD__SOL": "200",
                       "TRADEWIRE_LIVE__MINT_EXPOSURE_CAPS__USDC": "7"})
    assert settings.paper.starting_balances == {"SOL": 5, "USDC": 100000}
    assert settings.market.prices_usd["SOL"] == 200 and settings.market.prices_usd["USDC"] == 1
    assert settings.live.mint_exposure_caps == {"USDC": 7}


def test_a_variable_for_one_entry_amends_the_file_s_table(tmp_path):
    settings = loaded({"TRADEWIRE_PAPER__STARTING_BALANCES__SOL": "5"}, "[paper.starting_balances]\nUSDC = 7\n",
                      tmp_path)
    assert settings.paper.starting_balances == {"USDC": 7, "SOL": 5}


def test_a_whole_table_in_a_variable_still_replaces_the_default():
    settings = loaded({"TRADEWIRE_PAPER__STARTING_BALANCES": '{"SOL": "5"}'})
    assert settings.paper.starting_balances == {"SOL": 5}


@pytest.mark.parametrize("toml, said", [
    ("[paper.starting_balances]\nsol = 5\n", "paper.starting_balances: 'sol' is not a configured mint "
                                             "(did you mean 'SOL'?)"),
    ("[market.prices_usd]\nSOL = 150\nUSDC = 1\nUSDT = 1\nJUP = 1\nBONK = 1\nDOGE = 1\n",
     "market: prices_usd: 'DOGE' is not a configured mint"),
    ("[market.prices_usd]\nSOL = -150\nUSDC = 1\nUSDT = 1\nJUP = 1\nBONK = 1\n",
     "market.prices_usd.SOL: Input should be greater than 0"),
    ("[paper.starting_balances]\nSOL = -5\n", "paper.starting_balances.SOL: Input should be greater than or equal "
                                              "to 0"),
])
def test_a_mint_s_entry_must_name_a_configured_mint_and_make_sense(tmp_path, toml, said):
    message = refused(toml=toml, tmp_path=tmp_path)
    assert said in message, message


# -- the shared store's URL ----------------------------------------------------------------------

@pytest.mark.parametrize("url", ["redis://user:hunter2@[bad/0", "http://user:hunter2@host/0",
                                 "redis://user:hunter2@host:port/0"])
def test_a_redis_url_that_is_not_one_is_named_and_its_password_not_shown(url):
    message = refused({"TRADEWIRE_SHARED__REDIS_URL": url})
    assert "shared.redis_url (from TRADEWIRE_SHARED__REDIS_URL): not a Redis URL" in message, message
    assert "hunter2" not in message


def test_a_redis_database_that_is_not_a_number_is_refused():
    # (redis-py read /O, a letter, as database 0: another application's data)
    message = refused({"TRADEWIRE_SHARED__REDIS_URL": "redis://:hunter2@host:6379/O"})
    assert "shared.redis_url (from TRADEWIRE_SHARED__REDIS_URL): the Redis URL's database" in message, message
    assert "hunter2" not in message


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "redis://:pw@host", "rediss://u:pw@host:6380/3",
                                 "unix:///run/redis.sock", "redis://host/?db=2"])
def test_redis_urls_that_are_one_load(url):
    assert loaded({"TRADEWIRE_SHARED__REDIS_URL": url}).shared.redis_url == url


# -- other values ----------------------------------------------------------------------------------

def test_a_webhook_endpoint_url_must_be_one_an_http_client_can_call():
    message = refused({"TRADEWIRE_WEBHOOKS__ENDPOINTS":
                       '[{"principal": "alice", "url": "https://bots example/hook?token=s3cr3t"}]'})
    assert "webhooks.endpoints.0.url" in message and "not an http(s) URL" in message, message
    assert "s3cr3t" not in message


def test_a_list_given_as_plain_text_in_a_variable_says_json_is_expected():
    message = refused({"TRADEWIRE_SERVER__CORS_ORIGINS": "https://a.example,https://b.example"})
    assert 'server.cors_origins (from TRADEWIRE_SERVER__CORS_ORIGINS): expected a list (in a variable, as JSON: ' \
           '["a", "b"])' in message, message


@pytest.mark.parametrize("keys, said", [
    ('[{kid = "k", algorithm = "HS256", secret = "short-s3cr3t"}]', "key 'k': HS256 secret must be at least 32 bytes"),
    ('[{kid = "k", algorithm = "HS512", secret = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t"}]',
     "key 'k': algorithm 'HS512' is not supported"),
    ('[{kid = "k", algorithm = "HS256", secret = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t"}, '
     '{kid = "k", algorithm = "HS256", secret = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t-2"}]',
     "keys: kid 'k' given to more than one key"),
])
def test_a_jwt_key_the_gateway_could_not_use_is_refused_at_load(tmp_path, keys, said):
    # (the configuration loaded, `tradewire keys` took it, and `serve` said "cannot start: key 'k': ...")
    message = refused(toml=f'[auth.jwt]\nissuer = "i"\naudience = "a"\nkeys = {keys}\n', tmp_path=tmp_path)
    assert f"auth.jwt: {said}" in message, message
    assert "s3cr3t" not in message


@pytest.mark.parametrize("first", [0, 1])
def test_a_variable_inside_a_setting_another_variable_sets_is_refused_whatever_their_order(first):
    # (one order refused it; the other dropped TRADEWIRE_LIVE__KILL_SWITCH__FILE, a typo, unsaid)
    variables = [("TRADEWIRE_LIVE__KILL_SWITCH", "halt"), ("TRADEWIRE_LIVE__KILL_SWITCH__FILE", "/run/kill")]
    env = dict(variables[first:] + variables[:first])
    with pytest.raises(ConfigError, match="conflicts with another TRADEWIRE_ variable"):
        load_settings(env=env)


@pytest.mark.parametrize("first", [0, 1])
def test_a_variable_inside_a_table_another_variable_gives_as_json_amends_it_whatever_their_order(first):
    # (one order amended the table; the other replaced the amendment by the table)
    variables = [("TRADEWIRE_AUTH__JWT", '{"issuer": "i", "audience": "a", "leeway_s": 5, "keys": [{"kid": "k", '
                                         '"algorithm": "HS256", "secret": "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t"}]}'),
                 ("TRADEWIRE_AUTH__JWT__LEEWAY_S", "30")]
    env = dict(variables[first:] + variables[:first])
    assert load_settings(env=env).auth.jwt["leeway_s"] == 30.0


@pytest.mark.parametrize("conf, said", [
    ("http::addr=127.0.0.1:9000;password=s3cret-pw;", "username= and password= go together"),
    ("tcp::addr=127.0.0.1:9009;", "ILP over HTTP is needed"),
    ("http::username=admin;password=s3cret-pw;", "no addr="),
])
def test_a_questdb_conf_the_audit_cannot_use_is_refused_at_load_without_its_secret(conf, said):
    message = refused({"TRADEWIRE_AUDIT__QUESTDB_CONF": conf})
    assert "audit.questdb_conf" in message and said in message, message
    assert "s3cret-pw" not in message
    assert loaded({"TRADEWIRE_AUDIT__QUESTDB_CONF": "http::addr=127.0.0.1:9000;username=a;password=b;"})


# -- true/false where a number belongs ------------------------------------------------------------

@pytest.mark.parametrize("toml, setting", [("[server]\ngrpc_port = true\n", "server.grpc_port"),
                                           ("[paper]\nlatency_ms = false\n", "paper.latency_ms"),
                                           ("[paper]\ndrift_bps_per_s = true\n", "paper.drift_bps_per_s")])
def test_true_or_false_for_a_number_is_refused_naming_the_setting(tmp_path, toml, setting):
    message = refused(toml=toml, tmp_path=tmp_path)
    assert f"{setting}: expected a number, not true or false" in message, message


def test_true_or_false_still_sets_a_switch(tmp_path):
    settings = loaded(toml="[paper]\nrealtime = false\n", tmp_path=tmp_path)
    assert settings.paper.realtime is False


# -- rate limits ---------------------------------------------------------------------------------

@pytest.mark.parametrize("setting, value", [("requests_per_s", "inf"), ("live_requests_per_s", "nan"),
                                            ("stream_opens_per_s", "1e-300"), ("auth_failures_per_s", "0.0001"),
                                            ("burst", "4294967296"), ("live_burst", "0")])
def test_a_rate_limit_that_would_turn_the_limit_off_or_overflow_is_refused_by_name(setting, value):
    # (inf let every call through; 1e-300/s named retry delays of 10^300 s; a burst past 2^32
    # failed every HealthCheck of an authenticated caller: INTERNAL)
    assert f"limits.{setting}" in refused({f"TRADEWIRE_LIMITS__{setting.upper()}": value})


def test_inf_is_refused_in_any_numeric_setting(tmp_path):
    # (a shutdown that waits for ever for calls to finish)
    assert "server.shutdown_grace_s" in refused(toml="[server]\nshutdown_grace_s = inf\n", tmp_path=tmp_path)


def test_a_starting_balance_no_wallet_can_hold_is_refused_at_load(tmp_path):
    # (9.3e9 SOL is 9.3e18 lamports, past a signed 64-bit count: every caller's first call failed)
    message = refused(toml="[paper.starting_balances]\nSOL = 9300000000\nUSDC = 1000\n", tmp_path=tmp_path)
    assert "paper.starting_balances" in message and "SOL" in message
    assert loaded(toml="[paper.starting_balances]\nSOL = 9000000000\nUSDC = 1000\n", tmp_path=tmp_path)


# -- webhooks ------------------------------------------------------------------------------------

def test_a_webhook_timeout_past_the_latency_histogram_is_refused(tmp_path):
    # (attempts of up to a minute are measured in their own buckets; past it they all fell in +Inf)
    assert "webhooks.timeout_s" in refused(toml="[webhooks]\ntimeout_s = 61\n", tmp_path=tmp_path)
    assert loaded(toml="[webhooks]\ntimeout_s = 60\n", tmp_path=tmp_path)


def test_every_webhook_timeout_allowed_has_latency_buckets_up_to_it():
    metrics = Metrics()
    metrics.webhook_seconds.observe(59.0)
    buckets = {s.labels["le"]: s.value for family in metrics.registry.collect() for s in family.samples
               if s.name == "tradewire_webhook_delivery_duration_seconds_bucket"}
    assert buckets["60.0"] == 1 and buckets["10.0"] == 0
