"""Browser fixtures: Debian's chromium and chromedriver driven by selenium, against the
gateway served on 127.0.0.1 from a thread, on the test's database.

Chromium is installed here when missing and we are root (CI); elsewhere these tests skip
and say what to install. The machine has no network, so every flag below keeps Chromium
from reaching out (and Selenium Manager is never asked to download a driver).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import threading

import pytest
from werkzeug.serving import make_server

from tests.e2e.conftest import refuse_writes  # noqa: F401  (a fixture the scenario uses)

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,900")


def _install_chromium() -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"], check=True, env=env,
                   capture_output=True, timeout=900)


@pytest.fixture(scope="session")
def chromium_installed():
    pytest.importorskip("selenium", reason="pip install selenium (requirements-dev.txt) to run browser tests")
    missing = not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER))
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        _install_chromium()
    elif missing:
        pytest.skip(f"browser tests need {CHROMIUM} and {CHROMEDRIVER}: "
                    "apt-get install chromium chromium-driver (as root), then run again")


@pytest.fixture
def browser(chromium_installed, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def serve():
    """Serve a WSGI app on a free loopback port from a thread; yields a function of the app
    that returns the base URL."""
    servers = []

    def start(app) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
