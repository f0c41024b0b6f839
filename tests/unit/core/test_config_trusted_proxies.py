"""[server] trusted_proxies: the reverse proxies whose X-Forwarded-For the HTTP listener believes."""

import pytest

from tradewire.core.config import ConfigError, load_settings


def test_no_proxy_is_trusted_by_default():
    assert load_settings(env={}).server.trusted_proxies == ()


def test_addresses_and_networks_are_accepted(tmp_path):
    config = tmp_path / "tw.toml"
    config.write_text('[server]\ntrusted_proxies = ["10.0.0.0/8", "192.168.1.7", "::1", "fd00::/8"]\n')
    assert load_settings(config, env={}).server.trusted_proxies == ("10.0.0.0/8", "192.168.1.7", "::1", "fd00::/8")


@pytest.mark.parametrize("entry,says", [
    ("proxy.internal", "not an IP address or CIDR network: 'proxy.internal'"),
    ("*", "not an IP address or CIDR network: '*'"),
    ("10.0.0.0/33", "not an IP address or CIDR network: '10.0.0.0/33'"),
    ("10.1.2.3/8", "not an IP address or CIDR network: '10.1.2.3/8' (host bits set: did you mean 10.0.0.0/8?)"),
])
def test_anything_else_is_refused_naming_the_entry(entry, says):
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"TRADEWIRE_SERVER__TRUSTED_PROXIES": f'["127.0.0.1", "{entry}"]'})
    assert f"server.trusted_proxies (from TRADEWIRE_SERVER__TRUSTED_PROXIES): {says}" in str(caught.value)
