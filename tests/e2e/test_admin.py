"""The /admin pages through the Flask test client: sign-in, CSRF, cookie flags, pages."""
from __future__ import annotations

import re
import time
from datetime import timedelta, timezone
from urllib.parse import quote, urlencode

import pytest

from devtools import revenuecat as rc
from gateway.config import ConfigError, from_env
from tests.e2e.conftest import API_KEY
from tests.support import chunked

PASSWORD = "correct horse battery staple"
SECRET_KEY = "s" * 40


@pytest.fixture
def app(make_app):
    return make_app(ADMIN_PASSWORD=PASSWORD, ADMIN_SECRET_KEY=SECRET_KEY, REVENUECAT_WEBHOOK_AUTH=rc.AUTH,
                    GATEWAY_API_KEYS=API_KEY)


@pytest.fixture
def client(app):
    return app.test_client()


def token(client, path="/admin/login") -> str:
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def sign_in(client, password=PASSWORD, **headers):
    return client.post("/admin/login", data={"password": password, "csrf_token": token(client)}, headers=headers)


def send(client, evt) -> str:
    return client.post("/webhooks/revenuecat", data=rc.body(evt), headers={"Authorization": rc.AUTH}).get_json()["status"]


def event_row(app, pk):
    with app.extensions["gateway"].store.transaction() as tx:
        return tx.get_event(pk)


def test_admin_is_disabled_without_a_password(make_app):
    response = make_app().test_client().get("/admin/login")
    assert response.status_code == 503 and "ADMIN_PASSWORD" in response.get_data(as_text=True)


def test_a_password_without_a_secret_key_stops_the_start():
    with pytest.raises(ConfigError, match="ADMIN_SECRET_KEY"):
        from_env({"ADMIN_PASSWORD": PASSWORD})


def test_pages_redirect_to_sign_in_when_signed_out(client):
    for path in ("/admin/", "/admin/deliveries", "/admin/users?sub=x", "/admin/backlog", "/admin/deliveries/1"):
        response = client.get(path)
        assert response.status_code == 302 and response.location.startswith("/admin/login?next=")
    assert client.post("/admin/deliveries/1/replay").status_code == 302


def test_wrong_password_is_refused_then_right_one_signs_in_with_safe_cookie_flags(client):
    wrong = sign_in(client, "guess")
    assert wrong.status_code == 401 and "Wrong password." in wrong.get_data(as_text=True)
    right = sign_in(client)
    assert right.status_code == 302 and right.location == "/admin/deliveries"
    cookie = right.headers["Set-Cookie"]
    assert cookie.startswith("gateway_admin=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Path=/admin" in cookie and "Secure" not in cookie  # plain http in this test
    assert client.get("/admin/deliveries").status_code == 200


def test_the_cookie_is_secure_behind_an_https_proxy(client):
    assert "Secure" in sign_in(client, **{"X-Forwarded-Proto": "https"}).headers["Set-Cookie"]


def test_sign_in_without_csrf_token_is_refused(client):
    client.get("/admin/login")
    assert client.post("/admin/login", data={"password": PASSWORD}).status_code == 400
    assert client.get("/admin/deliveries").status_code == 302


def test_a_sign_in_form_past_the_body_limit_is_refused_without_being_read_whole(app):
    """The sign-in form is open to anyone: Werkzeug reads a urlencoded form whole, so
    without a limit a chunked body of gigabytes would be held in a worker's memory."""
    statuses, body = chunked.send(app, "/admin/login", {"Content-Type": "application/x-www-form-urlencoded"})
    # Werkzeug reads a form up to MAX_CONTENT_LENGTH and parses that much: refused all the same.
    assert body.served <= 1_048_576 and statuses == ["400 BAD REQUEST"]
    answer = app.test_client().post("/admin/login", data=b"x" * 1_048_577, content_type="application/x-www-form-urlencoded")
    assert answer.status_code == 413


def test_sign_in_goes_back_to_the_page_asked_for_but_never_off_site(client):
    assert sign_in(client).status_code == 302
    client.post("/admin/logout", data={"csrf_token": token(client, "/admin/deliveries")})
    response = client.post("/admin/login", data={"password": PASSWORD, "csrf_token": token(client),
                                                  "next": "/admin/users?sub=u1"})
    assert response.location == "/admin/users?sub=u1"
    client.post("/admin/logout", data={"csrf_token": token(client, "/admin/deliveries")})
    response = client.post("/admin/login", data={"password": PASSWORD, "csrf_token": token(client),
                                                  "next": "//evil.example/admin"})
    assert response.location == "/admin/deliveries"


def test_failed_logins_are_throttled_per_address(client):
    for _ in range(5):
        assert sign_in(client, "guess").status_code == 401
    assert sign_in(client).status_code == 429  # even the right password, until the window passes


def test_logout_ends_the_session(client):
    sign_in(client)
    assert client.post("/admin/logout", data={"csrf_token": token(client, "/admin/deliveries")}).status_code == 302
    assert client.get("/admin/deliveries").status_code == 302


def test_replay_needs_the_csrf_token_and_nothing_is_replayed_without_it(app, client, refuse_writes):
    refuse_writes.on("subscriptions")
    assert send(client, rc.event("INITIAL_PURCHASE")) == "deferred"
    refuse_writes.off()
    sign_in(client)
    with app.extensions["gateway"].store.transaction() as tx:
        (before,) = tx.search_events()  # its id: PostgreSQL's sequence skips the rolled-back first try
    page = f"/admin/deliveries/{before.id}"
    assert client.post(f"{page}/replay").status_code == 400
    assert client.post(f"{page}/replay", data={"csrf_token": "forged"}).status_code == 403
    assert event_row(app, before.id) == before and before.status == "deferred"
    done = client.post(f"{page}/replay", data={"csrf_token": token(client, page)}, follow_redirects=True)
    assert f"Replayed delivery {before.id}: processed." in done.get_data(as_text=True)
    assert event_row(app, before.id).status == "processed"
    premium = client.get("/v1/users/user-1/entitlements", headers={"Authorization": f"Bearer {API_KEY}"})
    assert premium.get_json()["is_premium"] is True


def test_deliveries_filter_and_page(client):
    for n in range(55):
        send(client, rc.event("INITIAL_PURCHASE", f"user-{n}", transaction=str(n)))
    send(client, rc.event("TEST"))
    sign_in(client)
    page = client.get("/admin/deliveries").get_data(as_text=True)
    assert page.count('<tr id="event-') == 50 and 'id="older"' in page
    older = re.search(r'id="older" href="([^"]+)"', page).group(1).replace("&amp;", "&")
    assert client.get(older).get_data(as_text=True).count('<tr id="event-') == 6
    ignored = client.get("/admin/deliveries?status=ignored&source=revenuecat").get_data(as_text=True)
    assert ignored.count('<tr id="event-') == 1 and "TEST" in ignored
    assert client.get("/admin/deliveries?type=TEST").get_data(as_text=True).count('<tr id="event-') == 1
    assert client.get("/admin/deliveries?until=2000-01-01T00:00").get_data(as_text=True).count('<tr id="event-') == 0
    assert client.get("/admin/deliveries?since=2000-01-01T00:00").get_data(as_text=True).count('<tr id="event-') == 50
    assert client.get("/admin/deliveries?since=yesterday").status_code == 400


def test_delivery_user_and_backlog_pages(client):
    send(client, rc.event("INITIAL_PURCHASE", "user-7", transaction="77"))
    sign_in(client)
    detail = client.get("/admin/deliveries/1").get_data(as_text=True)
    assert "INITIAL_PURCHASE" in detail and "&#34;app_user_id&#34;: &#34;user-7&#34;" in detail
    assert 'href="/admin/users?sub=user-7"' in detail
    user = client.get("/admin/users?sub=user-7").get_data(as_text=True)
    assert "is <span class=\"yes\">premium</span>" in user and "grants premium until" in user
    assert 'href="/admin/deliveries/1"' in user
    nobody = client.get("/admin/users?sub=nobody").get_data(as_text=True)
    assert "not premium" in nobody and "No store subscription" in nobody
    backlog = client.get("/admin/backlog").get_data(as_text=True)
    assert 'id="total-deferred">0<' in backlog and 'id="total-failed">0<' in backlog
    assert client.get("/admin/deliveries/999").status_code == 404


def test_strings_a_store_delivers_are_escaped_on_every_page(client):
    """A subscriber's id, a product, a store attribute: a buyer can put markup in what a
    store sends us, and an operator opens the pages signed in."""
    hostile = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    user = "u-" + hostile
    send(client, rc.event("INITIAL_PURCHASE", user, product_id="p" + hostile, transaction="t" + hostile,
                          subscriber_attributes={"$email": {"value": hostile}}))
    send(client, rc.event(hostile))  # an event type of no interest, stored and shown
    sign_in(client)
    pages = ["/admin/deliveries", "/admin/deliveries/1", "/admin/deliveries/2", "/admin/backlog",
             "/admin/users?" + urlencode({"sub": user}), f"/admin/deliveries?type={quote(hostile)}"]
    for page in pages:
        text = client.get(page).get_data(as_text=True)
        assert "<script>" not in text and "<img" not in text, page
    assert "&lt;script&gt;" in client.get("/admin/deliveries/1").get_data(as_text=True)


def test_admin_pages_are_not_cached_or_framed(client):
    sign_in(client)
    response = client.get("/admin/deliveries")
    assert response.headers["Cache-Control"] == "no-store" and response.headers["X-Frame-Options"] == "DENY"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


def test_the_cookie_secure_setting_is_checked_and_can_force_secure(make_app):
    with pytest.raises(ConfigError, match="ADMIN_COOKIE_SECURE"):
        from_env({"ADMIN_PASSWORD": PASSWORD, "ADMIN_SECRET_KEY": SECRET_KEY, "ADMIN_COOKIE_SECURE": "maybe"})
    client = make_app(ADMIN_PASSWORD=PASSWORD, ADMIN_SECRET_KEY=SECRET_KEY, ADMIN_COOKIE_SECURE="true").test_client()
    assert "Secure" in sign_in(client).headers["Set-Cookie"]


def test_an_apple_delivery_shows_its_decoded_notification(make_app, tmp_path):
    from devtools.apple_pki import mint_chain
    from devtools.apple_store import AppStore

    chain = mint_chain()
    apple = AppStore(chain)
    app = make_app(ADMIN_PASSWORD=PASSWORD, ADMIN_SECRET_KEY=SECRET_KEY, **apple.env(chain.write_root(tmp_path)))
    client = app.test_client()
    note = apple.notification("SUBSCRIBED", "INITIAL_BUY", transaction=apple.transaction("9000", token="u-apple"),
                              renewal=apple.renewal("9000"))
    assert client.post("/webhooks/apple", data=apple.body(note), content_type="application/json").status_code == 200
    sign_in(client)
    with app.extensions["gateway"].store.transaction() as tx:
        (event,) = tx.search_events()
    page = client.get(f"/admin/deliveries/{event.id}").get_data(as_text=True)
    decoded = page.split('<pre id="data">')[1].split("</pre>")[0]
    assert "&#34;notificationType&#34;: &#34;SUBSCRIBED&#34;" in decoded
    assert "&#34;originalTransactionId&#34;: &#34;9000&#34;" in decoded
    assert "signedPayload" in page  # the raw body is there too, for the record


def test_behind_a_trusted_proxy_the_throttle_counts_each_client_not_the_router(make_app):
    """Heroku's router connects from one address for everyone: with FORWARDED_HOPS=1 a
    guesser is throttled without locking the operator out."""
    app = make_app(ADMIN_PASSWORD=PASSWORD, ADMIN_SECRET_KEY=SECRET_KEY, FORWARDED_HOPS="1")
    guesser, operator = app.test_client(), app.test_client()
    for _ in range(5):
        assert sign_in(guesser, "guess", **{"X-Forwarded-For": "203.0.113.9"}).status_code == 401
    assert sign_in(guesser, **{"X-Forwarded-For": "203.0.113.9"}).status_code == 429
    assert sign_in(operator, **{"X-Forwarded-For": "198.51.100.4"}).status_code == 302


def test_an_ipv6_guesser_is_throttled_across_the_addresses_of_its_network(make_app):
    """One IPv6 host holds a /64 (2^64 addresses): counted per address, it could guess
    five times per address without end. Failures count per /64 (an IPv4 address alone)."""
    app = make_app(ADMIN_PASSWORD=PASSWORD, ADMIN_SECRET_KEY=SECRET_KEY, FORWARDED_HOPS="1")
    guesser, neighbour = app.test_client(), app.test_client()
    for n in range(1, 6):
        assert sign_in(guesser, "guess", **{"X-Forwarded-For": f"2001:db8:0:1::{n:x}"}).status_code == 401
    assert sign_in(guesser, "guess", **{"X-Forwarded-For": "2001:db8:0:1:ffff::6"}).status_code == 429
    assert sign_in(neighbour, **{"X-Forwarded-For": "2001:db8:0:2::1"}).status_code == 302


def test_a_session_lasts_eight_hours_from_sign_in_however_busy(client):
    sign_in(client)
    page = client.get("/admin/deliveries")
    assert page.status_code == 200 and "Set-Cookie" not in page.headers  # not renewed by use


def test_a_session_ends_eight_hours_after_sign_in_though_its_cookie_was_written_since(client, monkeypatch):
    """Flask signs the cookie again whenever the session changes (the flash message after a
    replay or a saved endpoint), and its age restarts: a holder of the cookie, the
    operator's or a stolen one, must not keep it alive past eight hours by using it."""
    signed_in_at = time.time()
    sign_in(client)
    monkeypatch.setattr(time, "time", lambda: signed_in_at + 7 * 3600)
    csrf = token(client, "/admin/webhooks")
    assert "Set-Cookie" in client.post("/admin/webhooks/backend/replay", data={"csrf_token": csrf}).headers
    assert client.get("/admin/webhooks").status_code == 200
    monkeypatch.setattr(time, "time", lambda: signed_in_at + 8 * 3600 + 60)
    assert client.get("/admin/deliveries").status_code == 302


@pytest.mark.parametrize("path", [
    "/admin/deliveries?before=99999999999999999999999",
    "/admin/deliveries?before=%C2%B2",
    "/admin/users?sub=u1&before=99999999999999999999999",
])
def test_odd_paging_arguments_show_the_first_page(client, path):
    sign_in(client)
    send(client, rc.event("INITIAL_PURCHASE", user="u1"))
    assert client.get(path).status_code == 200


def test_a_delivery_id_beyond_any_row_is_not_found(client):
    sign_in(client)
    assert client.get("/admin/deliveries/99999999999999999999999").status_code == 404
    csrf = token(client, "/admin/deliveries")
    assert client.post("/admin/deliveries/99999999999999999999999/replay", data={"csrf_token": csrf}).status_code == 404


def test_time_filters_with_an_offset_mean_the_same_instant(app, client):
    sign_in(client)
    send(client, rc.event("INITIAL_PURCHASE", user="u-time"))
    received = event_row(app, 1).received_at.replace(microsecond=0)
    india = timezone(timedelta(hours=5, minutes=30))
    for since in (received.isoformat(), received.astimezone(india).isoformat()):
        page = client.get("/admin/deliveries", query_string={"since": since}).get_data(as_text=True)
        assert "INITIAL_PURCHASE" in page, since
    later = (received + timedelta(seconds=1)).astimezone(india).isoformat()
    assert "INITIAL_PURCHASE" not in client.get("/admin/deliveries", query_string={"since": later}).get_data(as_text=True)


def test_a_nul_in_a_url_is_a_bad_request(client):
    sign_in(client)
    for path in ("/admin/users?sub=%00", "/admin/deliveries?type=%00", "/v1/users/%00/history"):
        answer = client.get(path, headers={"Authorization": f"Bearer {API_KEY}"})
        assert answer.status_code == 400, path


def test_the_session_cookie_gives_its_holder_no_offline_test_of_a_password_guess(make_app):
    """Flask's session cookie is signed, not encrypted: whoever holds it reads its payload.
    What marks it signed in must not be computable from the password alone (an unsalted
    hash of it), or the holder could test guesses offline, past the login brake, and keep
    the password after the session ends. Keyed by ADMIN_SECRET_KEY, it differs per key."""
    marks = []
    for key in ("a" * 40, "b" * 40):
        app = make_app(ADMIN_PASSWORD=PASSWORD, ADMIN_SECRET_KEY=key)
        client = app.test_client()
        assert sign_in(client).status_code == 302
        cookie = client.get_cookie("gateway_admin", path="/admin")
        marks.append(app.session_interface.get_signing_serializer(app).loads(cookie.value)["admin"])
        assert client.get("/admin/deliveries").status_code == 200
    assert marks[0] != marks[1]


def test_the_user_page_shows_a_deleted_users_purchases_made_after_the_deletion(app, client):
    # Bought in the App Store through RevenueCat after the deletion: only the user can cancel
    # it, and the operator must see it to tell them.
    send(client, rc.event("INITIAL_PURCHASE", "user-8", transaction="81"))
    app.extensions["gateway"].accounts.delete("user-8")
    send(client, rc.event("INITIAL_PURCHASE", "user-8", transaction="82", product_id="com.example.after"))
    sign_in(client)

    pending = client.get("/admin/users?sub=user-8").get_data(as_text=True)
    assert 'id="deleted"' in pending and "left 1 for the user to cancel" in pending
    assert "com.example.after" in pending and ">pending<" in pending
    result = app.test_cli_runner().invoke(args=["events", "work", "--once"])
    assert result.exit_code == 0, result.output
    stopped = client.get("/admin/users?sub=user-8").get_data(as_text=True)
    assert ">must_cancel_in_store<" in stopped
    assert 'id="deleted"' not in client.get("/admin/users?sub=user-7").get_data(as_text=True)


def test_failed_logins_count_across_every_gateway_on_the_database(make_app):
    """gunicorn runs several workers, and a deployment several instances: each is a
    gateway of its own on the one database. Counted per process, a guesser would get the
    limit once per worker of every instance; counted in the database, once in all."""
    first, second = (make_app(ADMIN_PASSWORD=PASSWORD, ADMIN_SECRET_KEY=SECRET_KEY).test_client() for _ in range(2))
    for client in (first, second, first, second, first):
        assert sign_in(client, "guess").status_code == 401
    assert sign_in(second).status_code == 429 and sign_in(first).status_code == 429


def test_guesses_released_together_through_two_gateways_get_the_limit_and_no_more(make_app):
    """The attempt is counted before the password is compared, in one statement: guesses
    sent at once cannot all find the count below the limit and all be compared."""
    from tests.e2e.test_races import together

    apps = [make_app(ADMIN_PASSWORD=PASSWORD, ADMIN_SECRET_KEY=SECRET_KEY) for _ in range(2)]
    clients = [apps[n % 2].test_client() for n in range(12)]
    forms = [{"password": "guess", "csrf_token": token(client)} for client in clients]
    answers = together(*(lambda c=client, f=form: c.post("/admin/login", data=f) for client, form in zip(clients, forms)))
    assert sorted(answer.status_code for answer in answers) == [401] * 5 + [429] * 7


def test_a_sign_in_clears_the_failures_before_it(client):
    for _ in range(4):
        assert sign_in(client, "guess").status_code == 401
    assert sign_in(client).status_code == 302
    client.post("/admin/logout", data={"csrf_token": token(client, "/admin/deliveries")})
    for _ in range(5):
        assert sign_in(client, "guess").status_code == 401
    assert sign_in(client).status_code == 429


def test_no_password_is_compared_while_the_attempt_cannot_be_counted(client, refuse_writes):
    """Fail closed: a guesser must not get uncounted guesses during a database outage."""
    token(client)
    refuse_writes.on("admin_login_attempts")
    answer = sign_in(client)
    assert answer.status_code == 503 and "count sign-in attempts" in answer.get_data(as_text=True)
    refuse_writes.off()
    assert client.get("/admin/deliveries").status_code == 302
    assert sign_in(client).status_code == 302
