"""An operator's session in a real headless Chromium: sign in (a wrong password first),
find a user who is not premium because a delivery failed to apply, replay it from its
page, and see the user premium with the delivery as evidence."""
from __future__ import annotations

import pytest

from devtools import revenuecat as rc
from tests.e2e.conftest import API_KEY

pytestmark = pytest.mark.slow

PASSWORD = "browser-test-password"
USER = "browser-user-1"


@pytest.fixture
def app(make_app):
    return make_app(ADMIN_PASSWORD=PASSWORD, ADMIN_SECRET_KEY="k" * 40, REVENUECAT_WEBHOOK_AUTH=rc.AUTH,
                    GATEWAY_API_KEYS=API_KEY)


def wait_for(browser, css: str, text: str | None = None, timeout: float = 10):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    locator = (By.CSS_SELECTOR, css)
    condition = ec.text_to_be_present_in_element(locator, text) if text else ec.presence_of_element_located(locator)
    WebDriverWait(browser, timeout).until(condition)
    return browser.find_element(*locator)


def sign_in(browser, password: str) -> None:
    field = wait_for(browser, "#password")
    field.clear()
    field.send_keys(password)
    browser.find_element("css selector", "#sign-in").click()


def deliver_while_subscriptions_refuse_writes(app, refuse_writes) -> None:
    refuse_writes.on("subscriptions")
    response = app.test_client().post("/webhooks/revenuecat", data=rc.body(rc.event("INITIAL_PURCHASE", USER)),
                                      headers={"Authorization": rc.AUTH})
    refuse_writes.off()
    assert response.get_json() == {"status": "deferred"}


def test_operator_replays_a_failed_delivery_and_the_user_becomes_premium(app, serve, browser, refuse_writes):
    deliver_while_subscriptions_refuse_writes(app, refuse_writes)
    base = serve(app)

    browser.get(f"{base}/admin/users")
    assert "/admin/login" in browser.current_url
    sign_in(browser, "not the password")
    assert wait_for(browser, "#login-error").text == "Wrong password."
    sign_in(browser, PASSWORD)

    wait_for(browser, "#sub").send_keys(USER)
    browser.find_element("css selector", "#find").click()
    assert "not premium" in wait_for(browser, "#verdict").text

    browser.get(f"{base}/admin/backlog")
    assert wait_for(browser, "#total-deferred").text == "1"
    browser.find_element("css selector", "tr[id^=event-] a").click()
    assert wait_for(browser, "#status").text == "deferred"
    delivery_path = browser.current_url.removeprefix(base)
    error = browser.find_element("css selector", "#last-error").text
    assert "database or disk is full" in error or "No space left on device" in error

    browser.find_element("css selector", "#replay").click()
    assert "processed" in wait_for(browser, ".flash.ok").text
    assert wait_for(browser, "#status").text == "processed"

    browser.find_element("link text", USER).click()
    assert "premium" in wait_for(browser, "#verdict").text and "not premium" not in browser.find_element(
        "css selector", "#verdict").text
    assert "grants premium until" in browser.find_element("css selector", "#subscriptions").text
    assert browser.find_elements("css selector", f"#subscriptions a[href='{delivery_path}']")

    answer = app.test_client().get(f"/v1/users/{USER}/entitlements", headers={"Authorization": f"Bearer {API_KEY}"})
    assert answer.get_json()["is_premium"] is True
