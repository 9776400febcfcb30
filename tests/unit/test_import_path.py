"""What the web app imports: boto3 belongs to the Cognito triggers and the backfill job only,
imported where the backfill runs, so gunicorn's workers neither load it nor pay for it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CODE = """
import sys
import gateway
app = gateway.create_app()
import wsgi  # gunicorn's entry point, as the Procfile serves it
assert app.extensions["gateway"].settings.database_url.startswith("sqlite"), "not the default settings"
assert "backfill-stripe-customers" in app.cli.commands  # the job is registered all the same
print(sorted(name for name in sys.modules if name.split(".")[0] in ("boto3", "botocore", "s3transfer")))
"""


def test_the_web_app_with_default_settings_does_not_import_boto3(tmp_path):
    # No configuration at all (no variable of ours, no .env): the defaults, in an empty directory.
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", CODE], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
