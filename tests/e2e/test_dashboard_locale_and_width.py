"""The reader's locale and a 1280 px window: elapsed times and countdowns in the locale's digits
(ar-EG), request ids of the contract's full length readable at 1280 px, and amounts typed with
the locale's decimal comma (de-DE) read exactly, while a mark that may group thousands is refused."""

from __future__ import annotations

import base64
import re
import uuid

import httpx
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from playwright.async_api import Browser, Route, expect

from e2e.dashboard_readings_ui import fresh_key, sign_in_with_key
from e2e.dashboard_ui import DESKTOP, Dashboard, open_dashboard
from support.gateway_process import GatewayProcess

# Arabic-Indic digits with the Arabic decimal and thousands marks
ARABIC_NUMBER = r"[\u0660-\u0669\u066b\u066c]+"
REQUEST_ID_MAX_LEN = 64  # TradeRequest.request_id max_len in proto/tradewire/v1/trade.proto
EXECUTE = "**/tradewire.v1.TradeExecutionService/ExecuteTrade"


def rate_limited(retry_after_s: int) -> dict[str, str]:
    """The headers of a gRPC-web trailers-only answer refusing a call for the caller's rate
    limit (RESOURCE_EXHAUSTED, ErrorInfo RATE_LIMITED, RetryInfo), shaped as the gateway sends it."""
    details = []
    for message in (error_details_pb2.ErrorInfo(reason="RATE_LIMITED", domain="tradewire"),
                    error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=retry_after_s))):
        packed = any_pb2.Any()
        packed.Pack(message)
        details.append(packed)
    status = status_pb2.Status(code=8, message="rate limit exceeded", details=details)
    return {"content-type": "application/grpc-web+proto", "grpc-status": "8",
            "grpc-message": "rate%20limit%20exceeded",
            "grpc-status-details-bin": base64.b64encode(status.SerializeToString()).decode().rstrip("=")}


# -- 1. elapsed times and countdowns in the locale's digits ------------------------------------------

async def test_in_ar_eg_the_timeline_elapsed_times_use_the_locale_digits(browser: Browser, gateway: GatewayProcess):
    key = fresh_key(gateway)
    async with open_dashboard(browser, gateway, locale="ar-EG") as ui:
        page = ui.page
        await sign_in_with_key(ui, key)
        await page.locator("#amount").fill("0.5")
        await page.locator("#submit-trade").click()
        await expect(page.get_by_test_id("exec-status")).to_have_text("Filled")
        await expect(page.get_by_test_id("exec-amount-in")).to_have_text("\u0660\u066b\u0665 SOL")  # 0.5 SOL

        times = page.get_by_test_id("exec-timeline").locator("time")
        await expect(times.last).to_be_visible()
        texts = await times.all_inner_texts()
        assert len(texts) >= 2, texts
        for text in texts:  # "+٠٫٤ ms", never "+0.4 ms"
            assert re.fullmatch(rf"\+{ARABIC_NUMBER} (ms|s)", text), texts
        for title in [await t.get_attribute("title") for t in await times.all()]:
            assert title and not re.search(r"[0-9]", title), title  # sequence and time of day
        await expect(page.locator("#execution .bar-label")).to_have_text("\u0661\u0660\u0660 %")  # 100 %
        await ui.shot("locale-01-ar-eg-timeline", full_page=False)


async def test_in_ar_eg_a_rate_limit_countdown_uses_the_locale_digits(browser: Browser, gateway: GatewayProcess):
    key = fresh_key(gateway)

    async def refuse(route: Route) -> None:
        await route.fulfill(status=200, headers=rate_limited(30), body=b"")

    async with open_dashboard(browser, gateway, locale="ar-EG") as ui:
        page = ui.page
        await sign_in_with_key(ui, key)
        await page.route(EXECUTE, refuse)
        await page.locator("#amount").fill("0.5")
        await page.locator("#submit-trade").click()
        await expect(page.get_by_test_id("exec-status")).to_have_text("Rate limited")
        # "Retry in ٣٠ s.", counting down in the same digits
        await expect(page.get_by_test_id("exec-retry")).to_have_text(re.compile(rf"^Retry in {ARABIC_NUMBER} s\.$"))
        await expect(page.get_by_test_id("exec-retry")).not_to_have_text(re.compile("[0-9]"))
        await ui.shot("locale-02-ar-eg-countdown", full_page=False)


# -- 2. a request id of the contract's full length at 1280 px ---------------------------------------

async def within(inner, outer) -> None:
    """``inner`` is drawn whole (nothing clipped or scrolled away) inside ``outer``'s box."""
    box, frame = await inner.bounding_box(), await outer.bounding_box()
    assert box and frame
    assert frame["x"] - 0.5 <= box["x"] and box["x"] + box["width"] <= frame["x"] + frame["width"] + 0.5, (box, frame)
    clipped = await inner.evaluate("e => e.scrollWidth - e.clientWidth")
    assert clipped <= 0, f"{clipped} px of the text are cut off"


async def test_at_1280_px_a_long_request_id_can_be_read_whole(ui: Dashboard):
    assert ui.page.viewport_size == DESKTOP
    page = ui.page
    await sign_in_with_key(ui, fresh_key(ui.gateway))
    request_id = (uuid.uuid4().hex * 2)[:REQUEST_ID_MAX_LEN]  # no break opportunity in it
    await page.locator("#request-id").fill(request_id)
    await page.locator("#amount").fill("0.01")
    await page.locator("#submit-trade").click()
    await ui.wait_filled(request_id)

    # the trade card
    card_id = page.get_by_test_id("exec-request-id")
    await expect(card_id).to_have_text(request_id)
    await within(card_id, page.locator("#execution"))

    # the history row: whole (to read, and to select and copy), and the table still fits its card
    history_id = page.locator(f'#history tr[data-request-id="{request_id}"]').get_by_test_id("history-request-id")
    await expect(history_id).to_have_text(request_id)
    wrap = page.locator("#history .table-wrap")
    await within(history_id, wrap)
    assert await wrap.evaluate("w => w.scrollWidth - w.clientWidth") <= 0, "the history table scrolls sideways"
    await within(page.locator("#history thead th").last, wrap)
    await ui.shot("width-01-long-request-id", full_page=False)

    # the same id again with another amount: the trade form quotes it in its refusal, inside the card
    await page.locator("#request-id").fill(request_id)
    await page.locator("#amount").fill("0.02")
    await page.locator("#submit-trade").click()
    refusal = ui.field_error("request_id")
    await expect(refusal).to_contain_text(f"“{request_id}”")
    await within(refusal, page.locator("#trade-form"))
    assert await page.locator("#trade-form").evaluate("f => f.scrollWidth - f.clientWidth") <= 0
    await ui.shot("width-02-long-request-id-refused", full_page=False)


# -- 3. the locale's decimal comma ---------------------------------------------------------------------

async def test_in_de_de_a_decimal_comma_is_read_exactly(browser: Browser, gateway: GatewayProcess):
    key = fresh_key(gateway)
    async with open_dashboard(browser, gateway, locale="de-DE") as ui:
        page = ui.page
        await sign_in_with_key(ui, key, transport="Connect")  # JSON requests, so the test can read one
        amount = page.locator("#amount")
        await expect(amount).to_have_attribute("placeholder", "0,0")

        await amount.fill("0,5")
        request_id = await page.locator("#request-id").input_value()
        await page.locator("#submit-trade").click()
        await expect(page.get_by_test_id("exec-request-id")).to_have_text(request_id)
        await expect(page.get_by_test_id("exec-status")).to_have_text("Filled")
        await expect(page.get_by_test_id("exec-amount-in")).to_have_text("0,5 SOL")
        [sent] = ui.calls("ExecuteTrade")
        assert sent.post_data_json["amount"] == "0.5"
        async with httpx.AsyncClient(base_url=gateway.http_url, timeout=10,
                                     headers={"authorization": f"Bearer {key}"}) as http:
            stored = (await http.get(f"/v1/trades/{request_id}")).json()
        assert stored["requestedAmount"] == "0.5", stored
        await ui.shot("locale-03-de-de-decimal-comma", full_page=False)

        # "1.000" is one thousand in de-DE, one in the contract's notation: refused, nothing sent
        await amount.fill("1.000")
        await page.locator("#submit-trade").click()
        await expect(ui.field_error("amount")).to_have_text(re.compile(r"^Amount: .*0,5"))
        await expect(amount).to_have_attribute("aria-invalid", "true")
        await expect(page.get_by_test_id("form-error")).to_contain_text("nothing was sent")
        assert len(ui.calls("ExecuteTrade")) == 1


async def test_in_en_us_a_comma_is_never_read_as_a_decimal_mark(ui: Dashboard):
    page = ui.page
    await ui.sign_in("bob")
    amount = page.locator("#amount")
    await expect(amount).to_have_attribute("placeholder", "0.0")
    for typed in ("1,000", "0,5"):  # a thousands separator in en-US (0,5 is no number there)
        await amount.fill(typed)
        await page.locator("#submit-trade").click()
        await expect(ui.field_error("amount")).to_have_text(re.compile(r"^Amount: .*0\.5"))
        await expect(page.get_by_test_id("form-error")).to_contain_text("nothing was sent")
    assert ui.calls("ExecuteTrade") == []
