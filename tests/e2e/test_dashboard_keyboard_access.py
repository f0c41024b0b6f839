"""The sign-in page for a keyboard user: after a refused sign-in the focus is where the fix is
made (the key), not lost to the page."""

from __future__ import annotations

from playwright.async_api import expect

from e2e.dashboard_ui import Dashboard


async def test_a_refused_key_takes_the_focus_back_to_the_key_field(ui: Dashboard):
    page = ui.page
    await ui.open()
    key = page.get_by_label("API key or JWT")
    await key.fill("tw_notakey_" + "x" * 24)
    sign_in = page.get_by_role("button", name="Sign in")
    await sign_in.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#credential-error")).not_to_be_empty()
    await expect(sign_in).to_be_enabled()
    await expect(key).to_be_focused()
    await expect(key).to_have_attribute("aria-invalid", "true")

    # typed again and submitted from the field: the same place
    await key.fill("tw_stillnotakey_" + "y" * 24)
    await page.keyboard.press("Enter")
    await expect(page.locator("#credential-error")).not_to_be_empty()
    await expect(key).to_be_focused()
