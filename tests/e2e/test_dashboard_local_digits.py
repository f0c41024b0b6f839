"""Numbers in a locale with digits of its own (ar-EG, Arabic-Indic): whole numbers and their
fractions are written in the same digits."""

from __future__ import annotations

import re

from playwright.async_api import Browser, expect

from e2e.dashboard_readings_ui import fresh_key, sign_in_with_key
from e2e.dashboard_ui import open_dashboard
from support.gateway_process import GatewayProcess

# Arabic-Indic digits with the Arabic thousands separator and decimal mark, then a unit
ARABIC_NUMBER = r"[\u0660-\u0669\u066b\u066c]+"


async def test_fractions_use_the_locale_digits_as_whole_numbers_do(browser: Browser, gateway: GatewayProcess):
    key = fresh_key(gateway)
    async with open_dashboard(browser, gateway, locale="ar-EG") as ui:
        page = ui.page
        await sign_in_with_key(ui, key)
        await page.locator("#slippage").fill("75")
        await expect(page.locator("#trade-form")).to_contain_text("= \u0660\u066b\u0667\u0665 %")  # = 0.75 %

        await page.locator("#amount").fill("0.5")
        await page.locator("#submit-trade").click()
        await expect(page.get_by_test_id("exec-status")).to_have_text("Filled")
        await expect(page.get_by_test_id("exec-amount-in")).to_have_text("\u0660\u066b\u0665 SOL")  # 0.5 SOL
        await expect(page.get_by_test_id("exec-amount-out")).to_have_text(re.compile(rf"^{ARABIC_NUMBER} USDC$"))
        amounts = page.get_by_test_id("position-amount")
        await expect(amounts).to_have_count(2)
        for text in await amounts.all_inner_texts():
            assert re.fullmatch(ARABIC_NUMBER, text), text
        await expect(page.get_by_test_id("total-value")).to_have_text(re.compile(rf"^{ARABIC_NUMBER} USDC$"))
