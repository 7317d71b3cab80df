"""Properties of ServiceAccount names and issued kubeconfigs (no cluster needed)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from kubernetes import client
from kubernetes.config.kube_config import KubeConfigLoader

from k8s import names
from k8s.clients import ClusterTrust, trust_of
from k8s.kubeconfig import KubeconfigSpec, kubeconfig_names, render_kubeconfig

grant_ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz234567", min_size=4, max_size=20)
handles = st.text(min_size=0, max_size=200)


@given(handles, grant_ids)
def test_service_account_names_are_dns_labels(handle: str, gid: str) -> None:
    name = names.service_account_name(handle, gid)
    assert names.DNS1123_LABEL.match(name), name
    assert name.endswith("-" + gid)


@given(st.lists(st.tuples(handles, grant_ids), min_size=2, max_size=20, unique_by=lambda t: t[1]))
def test_service_account_names_unique_per_grant(pairs: list[tuple[str, str]]) -> None:
    made = [names.service_account_name(h, g) for h, g in pairs]
    assert len(set(made)) == len(made)


def test_names_stay_readable() -> None:
    assert names.service_account_name("Zoë.Müller", "abcd1234") == "zoe-muller-abcd1234"
    assert names.service_account_name("日本語", "abcd1234") == "user-abcd1234"
    assert len(names.service_account_name("x" * 200, "a" * 20)) == 63


token_chars = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.",
    min_size=20,
    max_size=200,
)
dns = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?\Z")


@given(
    cluster=dns,
    role=dns,
    handle=dns,
    token=token_chars,
    namespace=st.one_of(st.none(), dns),
    port=st.integers(1, 65535),
)
def test_kubeconfig_round_trips_through_the_client_loader(
    cluster: str, role: str, handle: str, token: str, namespace: str | None, port: int
) -> None:
    ca = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    user, context = kubeconfig_names(cluster, role, handle)
    text = render_kubeconfig(
        KubeconfigSpec(
            cluster=cluster,
            server=f"https://127.0.0.1:{port}",
            ca_pem=ca,
            user=user,
            token=token,
            context=context,
            namespace=namespace,
        )
    )
    doc = yaml.safe_load(text)
    assert doc["current-context"] == context
    assert (len(doc["clusters"]), len(doc["users"]), len(doc["contexts"])) == (1, 1, 1)
    assert doc["contexts"][0]["context"].get("namespace") == namespace

    loader = KubeConfigLoader(config_dict=doc)
    cfg = client.Configuration()
    loader.load_and_set(cfg)
    assert cfg.host == f"https://127.0.0.1:{port}"
    assert cfg.api_key == {"BearerToken": f"Bearer {token}"}
    assert Path(cfg.ssl_ca_cert).read_bytes() == ca


# -- trust: the issued file trusts the cluster as the bot does ------------------------------

CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def _render(trust: ClusterTrust) -> dict[str, object]:
    text = render_kubeconfig(
        KubeconfigSpec(
            cluster="prod",
            server="https://k8s.example:6443",
            ca_pem=b"",
            user="alice@prod",
            token="t" * 40,
            context="prod-view",
            trust=trust,
        )
    )
    entry = yaml.safe_load(text)["clusters"][0]["cluster"]
    assert isinstance(entry, dict)
    return entry


def test_every_trust_setting_reaches_the_issued_file() -> None:
    entry = _render(
        ClusterTrust(ca_pem=CA, tls_server_name="api.internal", proxy_url="socks5://p:1080")
    )
    assert entry == {
        "server": "https://k8s.example:6443",
        "certificate-authority-data": base64.b64encode(CA).decode(),
        "tls-server-name": "api.internal",
        "proxy-url": "socks5://p:1080",
    }
    # kubectl refuses a CA together with insecure-skip-tls-verify, so insecure wins alone.
    assert _render(ClusterTrust(ca_pem=CA, insecure=True)) == {
        "server": "https://k8s.example:6443",
        "insecure-skip-tls-verify": True,
    }
    # No CA and not insecure: the system's roots, as the bot itself uses.
    assert _render(ClusterTrust()) == {"server": "https://k8s.example:6443"}


def _loaded(cluster: dict[str, object], base: Path | None = None) -> client.Configuration:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://k:6443", **cluster}}],
        "users": [{"name": "u", "user": {"token": "x"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    cfg = client.Configuration()
    KubeConfigLoader(config_dict=doc, config_base_path=str(base or "")).load_and_set(cfg)
    return cfg


def test_the_bots_trust_is_read_from_every_kubeconfig_form(tmp_path: Path) -> None:
    from_data = trust_of(_loaded({"certificate-authority-data": base64.b64encode(CA).decode()}))
    assert from_data == ClusterTrust(ca_pem=CA)
    (tmp_path / "ca.crt").write_bytes(CA)
    from_file = trust_of(_loaded({"certificate-authority": "ca.crt"}, tmp_path))
    assert from_file == ClusterTrust(ca_pem=CA)
    insecure = trust_of(_loaded({"insecure-skip-tls-verify": True}))
    assert insecure.insecure
    assert insecure.ca_pem == b""
    named = trust_of(_loaded({"tls-server-name": "api.internal", "proxy-url": "http://p:3128"}))
    assert (named.tls_server_name, named.proxy_url) == ("api.internal", "http://p:3128")


def test_a_proxy_from_the_bots_environment_is_not_written_for_users(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://bot-only-proxy:3128")
    assert trust_of(_loaded({})).proxy_url is None
