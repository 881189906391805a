import ssl
import stat

from cryptography import x509

from chaos.proxy.upstream_tls import issue_server_cert
from chaos.vocab.hub import CDN_HOST


def test_a_server_certificate_from_the_proxy_ca_made_as_mitmdump_would(tmp_path):
    cert = issue_server_cert(tmp_path / "conf", tmp_path / "tls", (CDN_HOST, "127.0.0.1"), name="cdn")
    # The confdir now holds mitmproxy's CA files: mitmdump started there uses this CA.
    assert {p.name for p in (tmp_path / "conf").iterdir()} >= {"mitmproxy-ca.pem", "mitmproxy-ca-cert.pem"}
    assert cert.ca_file == tmp_path / "conf" / "mitmproxy-ca-cert.pem"
    leaf = x509.load_pem_x509_certificates(cert.cert_file.read_bytes())[0]
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [CDN_HOST]
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    # A client trusting only the proxy's CA accepts it; the key is the leaf's own, owner-only.
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert.cert_file, cert.key_file)
    client = ssl.create_default_context(cafile=str(cert.ca_file))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    back_in, back_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(incoming, outgoing, server_hostname=CDN_HOST)
    s = server.wrap_bio(back_in, back_out, server_side=True)
    for _ in range(10):
        for side in (c, s):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        back_in.write(outgoing.read())
        incoming.write(back_out.read())
    assert c.getpeercert()["subjectAltName"] == (("DNS", CDN_HOST), ("IP Address", "127.0.0.1"))
    assert stat.S_IMODE(cert.key_file.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" not in cert.cert_file.read_bytes()


def test_the_ca_is_made_once_and_then_reused(tmp_path):
    first = issue_server_cert(tmp_path / "conf", tmp_path / "tls", (CDN_HOST,), name="a")
    ca = first.ca_file.read_bytes()
    second = issue_server_cert(tmp_path / "conf", tmp_path / "tls", (CDN_HOST,), name="b")
    assert second.ca_file.read_bytes() == ca
    assert first.key_file.read_bytes() != second.key_file.read_bytes()
