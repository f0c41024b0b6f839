import pytest

from support.clients import PROTOCOLS, make_client
from support.gateway_process import GatewayProcess


@pytest.fixture(scope="session")
def gateway(tmp_path_factory):
    """One real gateway process for the integration suites; it must stop cleanly (exit 0)."""
    process = GatewayProcess(tmp_path_factory.mktemp("gateway")).start()
    yield process
    code = process.stop()
    assert code == 0, f"gateway exited with {code}:\n{process.log_text()[-3000:]}"


@pytest.fixture(params=PROTOCOLS)
async def client(request, gateway):
    c = make_client(request.param, gateway)
    yield c
    await c.close()
