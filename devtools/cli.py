"""``python -m devtools serve`` (what ``make demo`` runs) and ``python -m devtools send SOURCE SCENARIO``.

``serve`` mints the demo's credentials (once), starts the local fakes and the gateway on
``instance/demo/gateway.db``, and writes where they listen to ``instance/demo/run.json``;
``send``, from another shell, reads both, delivers a scenario signed as the store signs
it, and prints the user's entitlements as the app would read them (Cognito token).
"""
from __future__ import annotations

import json
import logging
import threading
import uuid
from datetime import timedelta
from pathlib import Path

import click
import requests

from devtools.credentials import FILE as CREDENTIALS_FILE
from devtools.credentials import Credentials, load_or_mint

DIRECTORY = "instance/demo"
DEFAULT_USER = "8d3f0c2a-4b6e-4f1a-9c57-2e1d0b7a6c35"  # a Cognito sub is a UUID
RUN = "run.json"


@click.group("demo", help="A local demo of every source, no store account needed.")
def demo_group() -> None:
    pass


@demo_group.command("serve")
@click.option("--port", default=8000, show_default=True)
@click.option("--receiver-port", default=8001, show_default=True, help="where `receive` listens")
@click.option("--directory", default=DIRECTORY, show_default=True, help="credentials, database, run.json")
def serve_command(port: int, receiver_port: int, directory: str) -> None:
    """Start the local fakes, the gateway and its worker, until interrupted."""
    from werkzeug.serving import run_simple

    from devtools.fakes import DemoFakes
    from gateway import create_app
    from gateway.config import from_env
    from gateway.store.migrate import upgrade

    folder = Path(directory).resolve()
    credentials = load_or_mint(folder)
    with DemoFakes(credentials) as fakes:
        env = {**fakes.gateway_env(f"sqlite:///{folder / 'gateway.db'}"), **_webhooks_env(credentials, receiver_port)}
        settings = from_env(env)
        upgrade(settings.database_url)
        app = create_app(settings)
        _start_worker(app)
        url = f"http://127.0.0.1:{port}"
        (folder / RUN).write_text(json.dumps({"gateway": url, "control": fakes.control.url}))
        click.echo(f"demo gateway on {url}; try:  .venv/bin/python -m devtools send stripe subscribe\n"
                   f"its events go to http://127.0.0.1:{receiver_port}: .venv/bin/python -m devtools receive")
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the gateway logs each request itself
        run_simple("127.0.0.1", port, app, threaded=True)


def _webhooks_env(credentials: Credentials, receiver_port: int) -> dict[str, str]:
    endpoint = {"name": "demo", "url": f"http://127.0.0.1:{receiver_port}/hooks/entitlements",
                "secrets": [credentials.webhook_secret]}
    return {"OUTBOUND_WEBHOOKS": json.dumps([endpoint]), "OUTBOUND_ALLOW_PRIVATE_TARGETS": "true"}


def _start_worker(app) -> None:
    """The Procfile's worker, in a thread of the demo's process: retries, expiries, webhooks."""
    from gateway.jobs import worker

    services = app.extensions["gateway"]
    chores = worker.chores(services, timedelta(seconds=services.settings.events_stale_after_seconds))
    threading.Thread(target=worker.run, args=(chores,), kwargs={"idle_seconds": 0.5}, daemon=True).start()


@demo_group.command("receive")
@click.option("--port", default=8001, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print each event whole, as JSON")
@click.option("--directory", default=DIRECTORY, show_default=True)
def receive_command(port: int, as_json: bool, directory: str) -> None:
    """Receive the demo's signed webhooks, verify them and print each event."""
    from werkzeug.serving import run_simple

    from devtools.receiver import receiver

    if not (Path(directory) / CREDENTIALS_FILE).exists():
        raise click.ClickException(f"no demo credentials in {directory}: start the demo with `make demo` first")
    click.echo(f"receiving the demo's entitlement events on http://127.0.0.1:{port}/hooks/entitlements", err=True)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    run_simple("127.0.0.1", port, receiver(load_or_mint(directory).webhook_secret, as_json), threaded=True)


class Sender:
    """Speaks to the demo's gateway and fakes as the stores and the app would."""

    def __init__(self, credentials: Credentials, run: dict) -> None:
        self.credentials, self.run = credentials, run
        self.http = requests.Session()

    def stripe_state(self, *objects: dict) -> None:
        self.http.put(f"{self.run['control']}/stripe", json=list(objects), timeout=10).raise_for_status()

    def play_state(self, token: str, **purchase) -> None:
        self.http.put(f"{self.run['control']}/play/{token}", json=purchase, timeout=10).raise_for_status()

    def push_headers(self) -> dict[str, str]:
        from devtools.fakes import push_signer

        return push_signer(self.credentials).headers()

    def post(self, source: str, body: bytes, headers: dict[str, str]) -> None:
        answer = self.http.post(f"{self.run['gateway']}/webhooks/{source}", data=body, headers=headers, timeout=30)
        click.echo(f"POST /webhooks/{source} -> {answer.status_code} {answer.text.strip()}", err=True)

    def entitlements(self, user: str) -> dict:
        from devtools.fakes import cognito_issuer

        headers = cognito_issuer(self.credentials).header(user)
        answer = self.http.get(f"{self.run['gateway']}/v1/me/entitlements", headers=headers, timeout=10)
        answer.raise_for_status()
        return answer.json()


@demo_group.command("send")
@click.argument("source", type=click.Choice(["stripe", "apple", "google", "revenuecat"]))
@click.argument("scenario")
@click.option("--user", default=DEFAULT_USER, show_default=True, help="the Cognito sub")
@click.option("--from-user", help="revenuecat transfer: the account access moves from")
@click.option("--directory", default=DIRECTORY, show_default=True)
def send_command(source: str, scenario: str, user: str, from_user: str | None, directory: str) -> None:
    """Deliver SCENARIO of SOURCE for a user, then print the user's entitlements."""
    from devtools.scenarios import SCENARIOS, SENDERS, dumps

    if scenario not in SCENARIOS[source]:
        raise click.BadParameter(f"{source} scenarios: {', '.join(SCENARIOS[source])}", param_hint="SCENARIO")
    if source == "apple":
        _require_uuid(user)
    run_file = Path(directory) / RUN
    if not run_file.exists():
        raise click.ClickException(f"no demo running: start it with `make demo` ({run_file} missing)")
    if not (Path(directory) / CREDENTIALS_FILE).exists():  # minting now would sign with keys the server lacks
        raise click.ClickException(f"no demo credentials in {directory}: restart the demo with `make demo`")
    sender = Sender(load_or_mint(directory), json.loads(run_file.read_text()))
    extra = {"from_user": from_user} if source == "revenuecat" else {}
    SENDERS[source](sender, scenario, user, **extra)
    click.echo(dumps(sender.entitlements(user)))


def _require_uuid(user: str) -> None:
    try:
        uuid.UUID(user)
    except ValueError:
        raise click.BadParameter("the App Store carries the user as appAccountToken, a UUID", param_hint="--user")
