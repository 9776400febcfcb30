"""The local demo: ``python -m devtools serve`` (what ``make demo`` runs) in a subprocess, then
every scenario of every source sent with ``send`` and read back as the app would."""
from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner

from devtools.cli import demo_group
from tests.support.procfile import ROOT, free_port

APPLE_USER = "5b0e9a44-0d5c-4c4f-8f0b-6d6a3c0f7e21"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    directory = tmp_path_factory.mktemp("demo")
    port, receiver_port = free_port(), free_port()
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ.get('PATH', '')}"}
    server = subprocess.Popen([sys.executable, "-m", "devtools", "serve", "--port", str(port),
                               "--receiver-port", str(receiver_port), "--directory", str(directory)],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    received = open(directory / "received.jsonl", "wb")
    receiver = None
    try:
        _wait(f"http://127.0.0.1:{port}/healthz", server)
        receiver = subprocess.Popen([sys.executable, "-m", "devtools", "receive", "--json", "--port",
                                     str(receiver_port), "--directory", str(directory)],
                                    cwd=ROOT, env=env, stdout=received, stderr=subprocess.DEVNULL)
        _wait_listening(receiver_port, receiver)
        yield directory
    finally:
        for process in (receiver, server):
            if process is not None:
                process.terminate()
                process.wait(timeout=10)
        received.close()


def _wait_listening(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "demo receive exited"
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
        except urllib.error.HTTPError:
            return  # it answers (404 for GET /)
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the demo receiver did not start")


def _wait(url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60  # the first start mints the keys
    while time.monotonic() < deadline:
        assert server.poll() is None, "demo serve exited"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("the demo did not start")


def send(directory, source: str, scenario: str, user: str, *extra: str) -> dict:
    """``demo send``; returns the premium entitlement it printed (None when there is none)."""
    result = CliRunner().invoke(demo_group, ["send", source, scenario, "--user", user, "--directory",
                                             str(directory), *extra])
    assert result.exit_code == 0, result.output
    assert f"POST /webhooks/{source} -> 200" in result.output
    answer = json.loads(result.stdout)
    assert answer["user_id"] == user
    return answer["entitlements"].get("premium")


def state(entitlement: dict) -> tuple:
    return entitlement["status"], entitlement["active"], entitlement["will_renew"], entitlement["source"]


def test_stripe_subscribe_cancel_refund(demo):
    user = "0c7d7f0e-1b62-4a8e-b1f4-6e0d2c9a5b13"
    assert state(send(demo, "stripe", "subscribe", user)) == ("active", True, True, "stripe")
    assert state(send(demo, "stripe", "cancel", user)) == ("active", True, False, "stripe")
    assert state(send(demo, "stripe", "refund", user)) == ("revoked", False, False, "stripe")


def test_the_receiver_gets_each_change_signed_and_the_feed_pages_the_same_events(demo):
    user = "4f1e2d3c-5b6a-4798-8a9b-0c1d2e3f4a5b"
    send(demo, "apple", "subscribe", user)
    send(demo, "apple", "renew", user)
    send(demo, "apple", "refund", user)
    wanted = ["entitlement.granted", "entitlement.renewed", "entitlement.revoked"]
    deadline, got = time.monotonic() + 30, []
    while time.monotonic() < deadline:
        lines = (demo / "received.jsonl").read_text().splitlines()
        got = [event for event in map(json.loads, lines) if event["user_id"] == user]
        if len(got) >= len(wanted):
            break
        time.sleep(0.2)
    assert [event["type"] for event in got] == wanted  # verified by the receiver, each once
    run, credentials = json.loads((demo / "run.json").read_text()), json.loads((demo / "credentials.json").read_text())
    request = urllib.request.Request(f"{run['gateway']}/v1/events?after=0&limit=1000",
                                     headers={"Authorization": f"Bearer {credentials['api_key']}"})
    with urllib.request.urlopen(request) as answer:
        feed = [event for event in json.load(answer)["events"] if event["user_id"] == user]
    assert feed == got


def test_apple_subscribe_renew_grace_refund(demo):
    assert state(send(demo, "apple", "subscribe", APPLE_USER)) == ("active", True, True, "apple")
    assert state(send(demo, "apple", "renew", APPLE_USER))[:2] == ("active", True)
    assert state(send(demo, "apple", "grace", APPLE_USER))[:2] == ("grace_period", True)
    assert state(send(demo, "apple", "refund", APPLE_USER)) == ("revoked", False, False, "apple")


def test_apple_needs_a_uuid_user(demo):
    result = CliRunner().invoke(demo_group, ["send", "apple", "subscribe", "--user", "not-a-uuid",
                                             "--directory", str(demo)])
    assert result.exit_code == 2 and "UUID" in result.output


def test_google_purchase_hold_pause_expire(demo):
    user = "google-demo-user"
    assert state(send(demo, "google", "purchase", user)) == ("active", True, True, "google")
    run = json.loads((demo / "run.json").read_text())
    token = "demo-purchase-token-" + hashlib.sha256(user.encode()).hexdigest()[:12]
    with urllib.request.urlopen(f"{run['control']}/play/{token}") as answer:  # the gateway acknowledged it
        assert json.load(answer)["acknowledgementState"] == "ACKNOWLEDGEMENT_STATE_ACKNOWLEDGED"
    assert state(send(demo, "google", "hold", user))[:2] == ("billing_retry", False)
    assert state(send(demo, "google", "pause", user))[:2] == ("paused", False)
    assert state(send(demo, "google", "expire", user)) == ("expired", False, False, "google")


def test_revenuecat_purchase_transfer_expire(demo):
    assert state(send(demo, "revenuecat", "purchase", "rc-old"))[:2] == ("active", True)
    assert state(send(demo, "revenuecat", "transfer", "rc-new", "--from-user", "rc-old"))[:2] == ("active", True)
    assert state(send(demo, "revenuecat", "purchase", "rc-solo"))[:2] == ("active", True)
    assert state(send(demo, "revenuecat", "expire", "rc-solo")) == ("expired", False, False, "revenuecat")


def test_credentials_stay_local_and_private(demo):
    credentials = demo / "credentials.json"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert {"stripe_webhook_secret", "apple", "google_key_pem", "cognito_key_pem"} <= set(json.loads(credentials.read_text()))
    assert "instance/" in (ROOT / ".gitignore").read_text().split()  # where `make demo` keeps them


def test_send_without_a_running_demo_says_how_to_start_it(tmp_path):
    result = CliRunner().invoke(demo_group, ["send", "stripe", "subscribe", "--directory", str(tmp_path)])
    assert result.exit_code == 1 and "make demo" in result.output


def test_credentials_are_never_readable_by_others_even_while_written(tmp_path):
    from devtools.credentials import load_or_mint

    previous = os.umask(0o022)  # what most shells set: files 0644 unless told otherwise
    try:
        load_or_mint(tmp_path / "fresh")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "fresh").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "fresh" / "credentials.json").stat().st_mode) == 0o600


def test_send_with_a_run_file_but_no_credentials_refuses_to_sign_with_new_keys(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"gateway": "http://127.0.0.1:9", "control": "http://127.0.0.1:9"}))
    result = CliRunner().invoke(demo_group, ["send", "stripe", "subscribe", "--directory", str(tmp_path)])
    assert result.exit_code == 1 and "make demo" in result.output
    assert not (tmp_path / "credentials.json").exists()
