"""Build dist/cognito-triggers.zip: the ``cognito_triggers`` package and its pinned runtime
dependencies, laid out for AWS Lambda's Python 3.12 runtime (``make lambda`` calls this).

boto3 and botocore are not bundled: the runtime provides them
(https://docs.aws.amazon.com/lambda/latest/dg/lambda-python.html). Wheels are chosen for the
target runtime and platform, not this machine's Python, and the archive is reproducible
(sorted entries, fixed timestamps), so an unchanged build gives an unchanged CodeSha256.
"""
from __future__ import annotations

import argparse
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


def bundled_files(site: Path) -> list[tuple[Path, str]]:
    """(source, name in the archive) for the dependencies and the package, sorted."""
    files = [(path, path.relative_to(site).as_posix()) for path in site.rglob("*") if path.is_file()]
    files += [(path, path.relative_to(ROOT).as_posix()) for path in PACKAGE.rglob("*.py")]
    keep = [(path, name) for path, name in files
            if "__pycache__" not in name and name.split("/")[0].split("-")[0] not in PROVIDED_BY_LAMBDA
            and not name.startswith("bin/")]
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
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as site:
        install_dependencies(Path(site), args.python_version, args.platform)
        files = bundled_files(Path(site))
        write_zip(files, args.output)
    print(f"{args.output}: {len(files)} files, {args.output.stat().st_size // 1024} KiB")
    return args.output


if __name__ == "__main__":
    main()
