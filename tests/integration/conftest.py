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


@pytest.fixture(scope="module")
def slow_gateway(tmp_path_factory):
    """A gateway of the module's own whose paper trades take wall-clock time (0.6 s building,
    then 0.6 s landing after SUBMITTED): a short deadline passes before a trade is sent."""
    process = GatewayProcess(
        tmp_path_factory.mktemp("slow-gateway"),
        env={"TRADEWIRE_PAPER__REALTIME": "true", "TRADEWIRE_PAPER__LATENCY_MS": "1200"},
    ).start()
    yield process
    assert process.stop() == 0, process.log_text()[-3000:]


@pytest.fixture(params=PROTOCOLS)
async def client(request, gateway):
    c = make_client(request.param, gateway)
    yield c
    await c.close()
