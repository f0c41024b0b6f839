"""Paths outside the API are the dashboard's files: a file that is not there is 404 and a
method files do not take is 405 — answered, never a 500 with a traceback in the log."""

import httpx
import pytest

from support.gateway_process import GatewayProcess


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("web")
    (root / "index.html").write_text("<!doctype html><title>tradewire</title>")
    (root / "assets").mkdir()
    (root / "assets" / "app.js").write_text("console.log('ok')")
    gateway = GatewayProcess(tmp_path_factory.mktemp("gw"), env={"TRADEWIRE_SERVER__WEB_ROOT": str(root)}).start()
    yield gateway
    assert gateway.stop() == 0


@pytest.mark.parametrize("method,path,status", [
    ("GET", "/", 200), ("GET", "/assets/app.js", 200), ("GET", "/nope", 404), ("GET", "/assets/nope.js", 404),
    ("POST", "/foo/bar", 404), ("HEAD", "/", 200),
])
def test_dashboard_paths_are_answered(site, method, path, status):
    response = httpx.request(method, site.http_url + path, content=b"x" if method == "POST" else None, timeout=10)
    assert response.status_code == status, response.text
    assert "Traceback" not in site.log_text() and "Exception in ASGI application" not in site.log_text()


def test_api_paths_stay_the_api_s(site):
    response = httpx.get(site.http_url + "/v1/nope", timeout=10)
    assert response.status_code == 404 and response.json()["details"][0]["reason"] == "ROUTE_NOT_FOUND"


def test_dashboard_pages_forbid_framing_and_foreign_scripts(site):
    # a page that places trades must not be clickable through another site's frame (finding of
    # a browser QA pass: no CSP, no frame protection)
    for path in ("/", "/assets/app.js", "/nope"):
        headers = httpx.get(site.http_url + path, timeout=10).headers
        policy = headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "object-src 'none'" in policy, (path, policy)
        # an injected script, inline handler or inline style does not run (the browser suite
        # fails on any refusal the dashboard itself would meet)
        assert "script-src 'self';" in policy and "style-src 'self';" in policy, (path, policy)
        assert "unsafe" not in policy, (path, policy)
        assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    # the API's own answers are not pages: no page policy on them
    assert "content-security-policy" not in httpx.get(site.http_url + "/v1/health", timeout=10).headers
