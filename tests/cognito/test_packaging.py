"""What Lambda and CloudFormation see: what the handlers import, the template, the built bundle.

Import time (the cold start) is measured by bench/lambda_import.py, not here."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath

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


def runtime_python() -> str | None:
    """A Python of the Lambda runtime's version (3.12) on this machine: $LAMBDA_PYTHON,
    python3.12 on the PATH, or one of pyenv's versions."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = [os.environ.get("LAMBDA_PYTHON"), "python3.12", *map(str, pyenv.glob("versions/3.12*/bin/python3.12"))]
    for candidate in filter(None, candidates):
        found = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 12))"],
                               capture_output=True, text=True, check=False) if _runs(candidate) else None
        if found and found.stdout.strip() == "True":
            return candidate
    return None


def _runs(candidate: str) -> bool:
    return os.path.isfile(candidate) or any(os.path.isfile(os.path.join(d, candidate))
                                            for d in os.environ["PATH"].split(os.pathsep))


@pytest.mark.slow
def test_the_bundle_carries_bytecode_that_the_runtime_python_uses(tmp_path):
    """/var/task is read-only: without .pyc files in the bundle, every cold start compiles
    each module it imports (stripe's: about a second of the trigger's five). Each .py has
    the runtime version's .pyc beside it, and a 3.12 interpreter importing the handlers
    (and stripe, which they call) from the unpacked bundle compiles none of them."""
    python = runtime_python()
    if python is None:
        pytest.skip("no Python 3.12 on this machine (set LAMBDA_PYTHON)")
    bundle = tmp_path / "cognito-triggers.zip"
    subprocess.run([sys.executable, str(ROOT / "deploy" / "build_lambda.py"), "--output", str(bundle),
                    "--compile-with", python], check=True, capture_output=True, timeout=600)
    names = set(zipfile.ZipFile(bundle).namelist())
    sources = [name for name in names if name.endswith(".py")]
    missing = [name for name in sources if str(PurePosixPath(name).parent / "__pycache__" /
                                               f"{PurePosixPath(name).stem}.cpython-312.pyc") not in names]
    assert sources and not missing, missing[:5]
    task = tmp_path / "task"
    zipfile.ZipFile(bundle).extractall(task)
    code = ("import json, sys, importlib._bootstrap_external as loading\n"
            "compiled, compile_source = [], loading.SourceLoader.source_to_code\n"
            "def counted(self, data, path, *args, **kwargs):\n"
            "    compiled.append(path)\n"
            "    return compile_source(self, data, path, *args, **kwargs)\n"
            "loading.SourceLoader.source_to_code = counted\n"
            "sys.path.insert(0, sys.argv[1])\n"
            "import cognito_triggers.post_confirmation, cognito_triggers.pre_token_generation, stripe\n"
            "print(json.dumps([path for path in compiled if path.startswith(sys.argv[1])]))")
    result = subprocess.run([python, "-B", "-S", "-c", code, str(task)], capture_output=True, text=True, timeout=120,
                            cwd=task, env={"PATH": os.environ["PATH"]})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
