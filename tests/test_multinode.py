"""Separate ``dask scheduler`` / ``dask worker`` processes, as on a multi-node cluster.

The scheduler and two single-process workers are started as their own processes on loopback
(once plain TCP, once TLS with a throw-away CA), ``fastism-dist score --scheduler`` runs against
them in another process, and the store is compared with in-process ISM. Everything started is
stopped by pid. The local cluster a run starts itself is checked to accept only TLS with its
own certificate.
"""

import datetime
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import LENGTH, random_letters, write_fasta
from fastism_dist import NaiveISM, open_results
from fastism_dist.io import open_sequences

pytestmark = pytest.mark.cluster

BIN = os.path.dirname(sys.executable)
DASK = os.path.join(BIN, "dask")
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")


class DaskProcesses:
    """A ``dask scheduler`` and ``dask worker`` processes, stopped by pid on ``stop()``."""

    def __init__(self, tmp_path, n_workers=2, tls=None):
        self.tmp_path = tmp_path
        self.procs = []
        self.scheduler_file = str(tmp_path / "scheduler.json")
        tls_args = []
        if tls:
            tls_args = ["--tls-ca-file", tls["ca"], "--tls-cert", tls["cert"], "--tls-key", tls["key"]]
        self._start("scheduler", [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0",
                                  "--dashboard-address", "127.0.0.1:0",
                                  "--scheduler-file", self.scheduler_file]
                    + (["--protocol", "tls"] if tls else []) + tls_args)
        self.address = self._wait_for_address()
        for i in range(n_workers):
            self._start(f"worker{i}", [DASK, "worker", "--scheduler-file", self.scheduler_file,
                                       "--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0",
                                       "--nworkers", "1", "--nthreads", "1"] + tls_args)

    def _start(self, name, cmd):
        log = open(self.tmp_path / f"{name}.log", "w")
        self.procs.append((name, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                                  env=ENV, cwd=self.tmp_path)))

    def _wait_for_address(self, timeout=60):
        t0 = time.time()
        while time.time() - t0 < timeout:
            if os.path.exists(self.scheduler_file):
                try:
                    with open(self.scheduler_file) as fh:
                        return json.load(fh)["address"]
                except (ValueError, KeyError):
                    pass
            assert self.procs[0][1].poll() is None, self.logs()
            time.sleep(0.1)
        raise AssertionError(f"the scheduler did not start:\n{self.logs()}")

    def wait_for_workers(self, n, security=None):
        from distributed import Client

        with Client(self.address, security=security, set_as_default=False, timeout="30s") as cl:
            cl.wait_for_workers(n, timeout=120)
            return dict(cl.scheduler_info(n_workers=-1)["workers"])

    def logs(self):
        return "\n".join(f"--- {name}\n{(self.tmp_path / f'{name}.log').read_text()[-2000:]}"
                         for name, _ in self.procs)

    def stop(self):
        for _, proc in reversed(self.procs):  # workers first, then the scheduler
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in reversed(self.procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture
def inputs(tmp_path, tiny_model_path):
    fasta = write_fasta(tmp_path / "in.fa", random_letters(9, LENGTH, seed=11))
    return tiny_model_path, fasta


def _check_store(out, model, fasta):
    ds = open_results(out)
    assert ds["done"].values.tolist() == [1] * ds.sizes["chunk"]
    want = NaiveISM(model)(open_sequences(fasta).read(slice(None)))
    np.testing.assert_allclose(ds["y"].values, want.mut[0], atol=1e-6)
    np.testing.assert_allclose(ds["y_ref"].values, want.ref[0], atol=1e-6)


def _score(model, fasta, out, address, extra=()):
    cmd = [sys.executable, "-m", "fastism_dist.cli", "score", model, fasta, "--out", out,
           "--scheduler", address, "--chunk-size", "2", "--method", "naive", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ENV)


def test_separate_scheduler_and_worker_processes(tmp_path, inputs):
    model, fasta = inputs
    cluster = DaskProcesses(tmp_path)
    try:
        workers = cluster.wait_for_workers(2)
        assert all(addr.startswith("tcp://127.0.0.1:") for addr in workers)
        out = str(tmp_path / "out.zarr")
        run = _score(model, fasta, out, cluster.address)
        assert run.returncode == 0, run.stderr + cluster.logs()
        assert "on 2 worker(s)" in run.stdout
        _check_store(out, model, fasta)
    finally:
        cluster.stop()
    assert all(proc.poll() is not None for _, proc in cluster.procs)


def _make_tls_files(directory):
    """A throw-away CA and one certificate for 127.0.0.1 / localhost signed by it (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fastism-dist test CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    files = {"ca": directory / "ca.pem", "cert": directory / "cert.pem", "key": directory / "key.pem"}
    files["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    os.chmod(files["key"], 0o600)
    return {k: str(v) for k, v in files.items()}


def test_tls_scheduler(tmp_path, inputs):
    from distributed import Security

    model, fasta = inputs
    tls = _make_tls_files(tmp_path)
    cluster = DaskProcesses(tmp_path, n_workers=1, tls=tls)
    try:
        assert cluster.address.startswith("tls://127.0.0.1:")
        security = Security(tls_ca_file=tls["ca"], tls_client_cert=tls["cert"],
                            tls_client_key=tls["key"], require_encryption=True)
        workers = cluster.wait_for_workers(1, security=security)
        assert all(addr.startswith("tls://") for addr in workers)
        out = str(tmp_path / "out.zarr")
        no_tls = _score(model, fasta, out, cluster.address)
        assert no_tls.returncode == 2 and "error: " in no_tls.stderr
        run = _score(model, fasta, out, cluster.address, extra=[
            "--tls-ca-file", tls["ca"], "--tls-cert", tls["cert"], "--tls-key", tls["key"]])
        assert run.returncode == 0, run.stderr + cluster.logs()
        _check_store(out, model, fasta)
    finally:
        cluster.stop()


def test_local_cluster_needs_its_certificate():
    """The local cluster listens on TLS: neither a plain TCP client nor a TLS client with
    another certificate gets in; the run's client does."""
    from distributed import Client, Security

    from fastism_dist.distributed import ClusterChoice, connect

    with connect(ClusterChoice(workers=1)) as cli:
        address = cli.scheduler.address
        assert address.startswith("tls://127.0.0.1:")
        assert cli.submit(sum, [1, 2], pure=False).result(timeout=60) == 3
        with pytest.raises((OSError, TimeoutError)):
            Client(address.replace("tls://", "tcp://"), timeout="3s", set_as_default=False)
        with pytest.raises((OSError, TimeoutError)):
            Client(address, security=Security.temporary(), timeout="3s", set_as_default=False)


def _monitoring_config():
    import dask

    from fastism_dist.distributed.settings import LOCAL_MONITORING

    return {key: dask.config.get(key) for key in LOCAL_MONITORING}


def test_local_cluster_monitors_less_often_unless_the_user_said_otherwise():
    """Worker processes of a local cluster see the lighter monitoring settings, except one the
    user set; the user's own config is unchanged afterwards."""
    import dask

    from fastism_dist.distributed import ClusterChoice, connect

    profile = "distributed.worker.profile.interval"
    with dask.config.set({profile: "20ms"}):
        with connect(ClusterChoice(workers=1)) as cli:
            (seen,) = cli.run(_monitoring_config).values()
        assert dask.config.get("distributed.admin.system-monitor.interval") == "500ms"
    assert seen == {profile: "20ms",
                    "distributed.worker.memory.monitor-interval": "1s",
                    "distributed.admin.system-monitor.interval": "2s"}
    with connect(ClusterChoice(workers=1)) as cli:
        (seen,) = cli.run(_monitoring_config).values()
    assert seen[profile] == "100ms"
