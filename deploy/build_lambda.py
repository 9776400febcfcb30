"""Build dist/cognito-triggers.zip: the ``cognito_triggers`` package and its pinned runtime
dependencies, laid out for AWS Lambda's Python 3.12 runtime (``make lambda`` calls this).

boto3 and botocore are not bundled: the runtime provides them
(https://docs.aws.amazon.com/lambda/latest/dg/lambda-python.html). Wheels are chosen for the
target runtime and platform, not this machine's Python, and the archive is reproducible
(sorted entries, fixed timestamps), so an unchanged build gives an unchanged CodeSha256.

Bytecode: Lambda's /var/task is read-only, so Python cannot cache what it compiles there,
and without ``.pyc`` files in the bundle every cold start compiles each module it imports
(stripe's, about a second of the trigger's five). A ``.pyc`` is read only by the Python
minor version that wrote it, so the modules are compiled by an interpreter of the
runtime's version (``--compile-with`` or ``LAMBDA_PYTHON``, else ``python3.12`` when one runs here), and
with none the bundle ships without bytecode, as it says. The ``.pyc`` files are
hash-checked (PEP 552): valid whatever times the unpacked files get, and never used for a
source edited since.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "cognito_triggers"
PROVIDED_BY_LAMBDA = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil")
FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def install_dependencies(target: Path, python_version: str, platform: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
         "--target", str(target), "--requirement", str(PACKAGE / "requirements.txt"),
         "--only-binary=:all:", "--implementation", "cp", "--python-version", python_version,
         "--platform", platform],
        check=True,
    )


def add_package(site: Path) -> None:
    """The package's modules beside the dependencies (not its ``__pycache__``: this machine's)."""
    for path in PACKAGE.rglob("*.py"):
        target = site / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def runtime_python(python: str | None, python_version: str) -> str | None:
    """The interpreter that compiles for the runtime: ``python``, or ``python<version>``
    when one runs here; None when there is none. One of another version is refused: its
    bytecode would be ignored by the runtime."""
    candidate = python or shutil.which(f"python{python_version}")
    if candidate is None:
        return None
    asked = [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]
    found = subprocess.run(asked, capture_output=True, text=True, check=False)
    if found.returncode != 0 and python is None:
        return None  # e.g. a pyenv shim of a version that is installed but not selected
    if found.stdout.strip() != python_version:
        raise SystemExit(f"{candidate} is Python {found.stdout.strip() or '?'}, not the runtime's {python_version}")
    return candidate


def compile_bytecode(site: Path, python: str) -> None:
    subprocess.run([python, "-m", "compileall", "-q", "--invalidation-mode", "checked-hash",
                    "-s", str(site), "-p", "/var/task", str(site)], check=True)


def bundled_files(site: Path) -> list[tuple[Path, str]]:
    """(source, name in the archive) for the dependencies and the package, sorted."""
    files = [(path, path.relative_to(site).as_posix()) for path in site.rglob("*") if path.is_file()]
    keep = [(path, name) for path, name in files
            if name.split("/")[0].split("-")[0] not in PROVIDED_BY_LAMBDA and not name.startswith("bin/")]
    return sorted(keep, key=lambda item: item[1])


def write_zip(files: list[tuple[Path, str]], output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, name in files:
            info = zipfile.ZipInfo(name, FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "dist" / "cognito-triggers.zip")
    parser.add_argument("--python-version", default="3.12", help="the Lambda runtime's Python")
    parser.add_argument("--platform", default="manylinux2014_x86_64",
                        help="manylinux2014_aarch64 for functions on arm64")
    parser.add_argument("--compile-with", metavar="PYTHON", default=os.environ.get("LAMBDA_PYTHON") or None,
                        help="interpreter of the runtime's version that writes the bytecode (default: "
                             "$LAMBDA_PYTHON, else python<version> when one runs here)")
    parser.add_argument("--no-bytecode", action="store_true", help="ship the sources alone")
    args = parser.parse_args(argv)
    python = None if args.no_bytecode else runtime_python(args.compile_with, args.python_version)
    with tempfile.TemporaryDirectory() as site:
        install_dependencies(Path(site), args.python_version, args.platform)
        add_package(Path(site))
        if python:
            compile_bytecode(Path(site), python)
        files = bundled_files(Path(site))
        write_zip(files, args.output)
    bytecode = f"bytecode for Python {args.python_version}" if python else \
        f"no bytecode (no Python {args.python_version} here: cold starts compile every module; see --compile-with)"
    print(f"{args.output}: {len(files)} files, {args.output.stat().st_size // 1024} KiB, {bytecode}")
    return args.output


if __name__ == "__main__":
    main()
