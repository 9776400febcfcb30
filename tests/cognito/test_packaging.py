"""What Lambda and CloudFormation see: what the handlers import, the template, the built bundle.

Import time (the cold start) is measured by bench/lambda_import.py, not here."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.cognito.conftest import load_event

ROOT = Path(__file__).resolve().parents[2]
HANDLERS = ["cognito_triggers.post_confirmation", "cognito_triggers.pre_token_generation"]
#: boto3 version of the Lambda python3.12 runtime is close enough; what matters is that only it is added.
LAMBDA_PROVIDES = "boto3==1.44.5"


def run_python(python: str, code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env})


@pytest.mark.parametrize("module", HANDLERS)
def test_handlers_import_without_flask_sqlalchemy_or_boto3(module):
    result = run_python(sys.executable, f"import {module}, sys; heavy = [m for m in ('flask', 'sqlalchemy', "
                                        "'boto3', 'gateway') if m in sys.modules]; assert not heavy, heavy")
    assert result.returncode == 0, result.stderr


def test_shared_customer_module_imports_without_flask_or_sqlalchemy():
    result = run_python(sys.executable, "import cognito_triggers.stripe_customers, cognito_triggers.backfill, sys; "
                                        "assert not {'flask', 'sqlalchemy'} & set(sys.modules)")
    assert result.returncode == 0, result.stderr


def test_template_passes_cfn_lint():
    result = subprocess.run([sys.executable, "-c", "import sys; from cfnlint.runner import main; sys.exit(main())",
                             str(ROOT / "deploy" / "template.yaml")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_built_bundle_runs_in_a_lambda_like_python(tmp_path):
    bundle = tmp_path / "cognito-triggers.zip"
    subprocess.run([sys.executable, str(ROOT / "deploy" / "build_lambda.py"), "--output", str(bundle)],
                   check=True, capture_output=True, timeout=600)
    names = zipfile.ZipFile(bundle).namelist()
    assert "cognito_triggers/post_confirmation.py" in names and "stripe/__init__.py" in names
    assert not [name for name in names if name.startswith(("boto3/", "botocore/", "tests/"))]

    task = tmp_path / "task"  # Lambda unpacks the bundle into /var/task
    zipfile.ZipFile(bundle).extractall(task)
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True, timeout=300)
    python = str(tmp_path / "venv" / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", LAMBDA_PROVIDES],
                   check=True, capture_output=True, timeout=600)

    event = load_event("post_confirmation_confirm_forgot_password")
    code = ("import json, sys; from cognito_triggers.post_confirmation import handler; "
            "event = json.loads(sys.argv[1]); print(json.dumps(handler(event, None)))")
    result = subprocess.run([python, "-c", code, json.dumps(event)], capture_output=True, text=True, timeout=60,
                            cwd=task, env={"PATH": os.environ["PATH"], "PYTHONPATH": str(task)})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == event
