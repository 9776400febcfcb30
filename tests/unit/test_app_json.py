"""app.json (Heroku's one-click deploy): it parses, configures every documented setting,
and the deploy brings the schema up to date."""
from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Provided by the platform, never asked for: the PostgreSQL add-on sets DATABASE_URL, the
# router sets PORT.
PLATFORM = {"DATABASE_URL", "PORT"}


def app_json() -> dict:
    return json.loads((ROOT / "app.json").read_text())


def readme_settings() -> set[str]:
    """Every variable named in the first column of the README's Configuration table."""
    section = (ROOT / "README.md").read_text().split("\n## Configuration", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])}


def test_every_readme_setting_is_described_or_provided_by_the_platform():
    env, settings = app_json()["env"], readme_settings()
    assert len(settings) > 30  # the table was found
    assert settings - PLATFORM <= set(env), sorted(settings - PLATFORM - set(env))
    assert not PLATFORM & set(env)
    for name, spec in env.items():
        assert spec["description"].strip(), name
        assert spec.get("required") is False or "value" in spec or "generator" in spec, name


def test_every_variable_the_settings_read_is_in_the_readme():
    """Each name gateway/config.py asks the environment for, found by asking it through a
    mapping that notes the names, is documented in the README (its tables or their notes)."""
    from gateway.config import from_env

    class Noting(dict):
        asked: set[str] = set()

        def get(self, key, default=None):
            self.asked.add(key)
            return super().get(key, default)

    from_env(Noting())
    readme = (ROOT / "README.md").read_text()
    assert len(Noting.asked) > 30
    assert {name for name in Noting.asked if f"`{name}`" not in readme} == set()


def test_secrets_are_generated_never_written_down():
    env = app_json()["env"]
    for name in ("GATEWAY_API_KEYS", "METRICS_TOKEN", "ADMIN_SECRET_KEY"):
        assert env[name] == {**env[name], "generator": "secret"} and "value" not in env[name], name
    for name, spec in env.items():
        if any(word in name for word in ("SECRET", "KEY", "TOKEN", "PASSWORD", "AUTH")):
            assert "value" not in spec, name


def test_postgres_scheduler_and_both_process_types():
    doc = app_json()
    plans = [addon["plan"] if isinstance(addon, dict) else addon for addon in doc["addons"]]
    assert any(plan.startswith("heroku-postgresql") for plan in plans)
    assert any(plan.startswith("scheduler") for plan in plans)
    assert set(doc["formation"]) == {"web", "worker"}
    assert "flask --app wsgi reconcile" in doc["description"]  # Scheduler jobs cannot be declared


def test_deploy_runs_the_migrations():
    procfile = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if ": " in line)
    migrate = "flask --app wsgi migrate"
    assert app_json()["scripts"].get("postdeploy") == migrate or procfile.get("release") == migrate
    assert procfile["release"] == migrate  # every deploy, not only the first


def test_python_version_is_pinned_for_the_buildpack():
    assert (ROOT / ".python-version").read_text().strip() == "3.11"
