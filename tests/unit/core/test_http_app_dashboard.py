"""A configured dashboard folder that holds no built dashboard is said at start, not silently
left out (every page then answered 404)."""

import logging

from prometheus_client import CollectorRegistry

from tradewire.core.config import ServerConfig
from tradewire.gateway.http_app import build_http_app

from support.stand_ins import NoService


def test_a_web_root_without_a_built_dashboard_is_a_warning(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="tradewire.server")
    build_http_app(NoService(), CollectorRegistry(), ServerConfig(web_root=tmp_path / "dist"))
    [said] = [r.getMessage() for r in caplog.records if r.name == "tradewire.server"]
    assert str(tmp_path / "dist") in said and "no dashboard is served" in said


def test_a_built_dashboard_is_served_without_a_word(tmp_path, caplog):
    (tmp_path / "index.html").write_text("<html></html>")
    caplog.set_level(logging.WARNING, logger="tradewire.server")
    build_http_app(NoService(), CollectorRegistry(), ServerConfig(web_root=tmp_path))
    assert not [r for r in caplog.records if r.name == "tradewire.server"]
