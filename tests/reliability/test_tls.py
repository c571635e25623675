"""https for real: the local server with a certificate from a private CA made here.

Certificates are verified by default (refused, one clear line, exit 2); ``--ca-bundle``
trusts the private CA; ``--insecure-skip-tls-verify`` works but says so on stderr.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from batchload.server.process import ServerProcess
from tests.reliability.helpers import (
    ServerView,
    assert_clean_output,
    cli,
    file_ids,
    sha256,
    write_signals,
)
from tests.upload_helpers import upload_args

TOKEN = "tls-token-0b5e77"
EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
SERVER_EXTENSIONS = """\
subjectAltName = IP:127.0.0.1, DNS:localhost
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""


@dataclass(frozen=True)
class Pki:
    ca: Path
    other_ca: Path
    cert: Path
    key: Path


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    openssl(
        "req", "-x509", *EC, "-keyout", str(key), "-out", str(cert), "-days", "2",
        "-subj", f"/CN=batchload test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A private CA, a certificate for 127.0.0.1 signed by it, and an unrelated CA."""
    directory = tmp_path_factory.mktemp("pki")
    ca, ca_key = make_ca(directory, "ca")
    other_ca, _ = make_ca(directory, "other-ca")
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    openssl("req", *EC, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1",
            cwd=directory)  # fmt: skip
    (directory / "server.ext").write_text(SERVER_EXTENSIONS)
    openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", "server.ext",
        cwd=directory,
    )  # fmt: skip
    return Pki(ca=ca, other_ca=other_ca, cert=cert, key=key)


@pytest.fixture(scope="module")
def https_server(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data_dir = tmp_path_factory.mktemp("tls") / "server"
    knobs = ["--tls-cert", str(pki.cert), "--tls-key", str(pki.key)]
    with ServerProcess(data_dir=data_dir, tokens=(TOKEN,), knobs=knobs, ca_bundle=pki.ca) as s:
        assert s.url.startswith("https://127.0.0.1:")
        yield s


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("ca", [None, "other_ca"], ids=["no CA given", "another CA"])
def test_an_untrusted_certificate_is_refused_with_one_clear_line(
    https_server: ServerProcess, pki: Pki, tmp_path: Path, ca: str | None
) -> None:
    write_signals(tmp_path / "data", 3)
    extra = ("--ca-bundle", str(getattr(pki, ca))) if ca else ()
    args = upload_args("data/*.csv", tmp_path / "m.sqlite", https_server.url, *extra)
    result = cli(*args, token=TOKEN, cwd=tmp_path)
    assert result.code == 2, result.stderr
    assert_clean_output(result)
    [error] = _errors(result.stderr)
    assert "certificate" in error and https_server.url in error and "--ca-bundle" in error
    assert result.json()["uploaded"] == 0


def test_ca_bundle_trusts_a_private_ca(
    https_server: ServerProcess, pki: Pki, tmp_path: Path
) -> None:
    paths = write_signals(tmp_path / "data", 5)
    args = upload_args(
        "data/*.csv", tmp_path / "m.sqlite", https_server.url, "--ca-bundle", str(pki.ca)
    )
    result = cli(*args, token=TOKEN, cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert "warning" not in result.stderr.lower()
    view = ServerView(https_server.url, TOKEN, verify=str(pki.ca))
    [dataset] = [d for d in view.datasets() if d["id"] == result.json()["dataset_id"]]
    on_server = {f["file_id"]: f["sha256"] for f in view.receipts(dataset["id"])}
    assert on_server == {k: sha256(Path(p)) for k, p in file_ids(paths).items()}
    check = cli(
        "reconcile", "--manifest", str(tmp_path / "m.sqlite"), "--ca-bundle", str(pki.ca),
        token=TOKEN, cwd=tmp_path,
    )  # fmt: skip
    assert check.code == 0, check.stderr


def test_skipping_verification_needs_the_loud_flag_and_warns(
    https_server: ServerProcess, tmp_path: Path
) -> None:
    write_signals(tmp_path / "data", 2)
    args = upload_args(
        "data/*.csv", tmp_path / "m.sqlite", https_server.url, "--insecure-skip-tls-verify"
    )
    result = cli("--quiet", *args, token=TOKEN, cwd=tmp_path)  # warned even when quiet
    assert result.code == 0, result.stderr
    summary = result.json()  # the module's server may hold these bytes already: not sent twice
    assert summary["uploaded"] + summary["found_on_service"] == 2
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "NOT verified" in warnings[0], result.stderr
