"""An SMTP server for the alerting tests (aiosmtpd): every mail lands as one file in
DIR/new (a Maildir). Modes:

  smtp_sink.py DIR PORT plain
  smtp_sink.py DIR PORT starttls   (STARTTLS required before MAIL)
  smtp_sink.py DIR PORT tls        (TLS from the first byte, SMTPS)

With --auth USER:PASSWORD, AUTH PLAIN/LOGIN is required (only over TLS) and only that
pair is accepted. For the TLS modes it makes a throwaway CA and a certificate for
127.0.0.1, and writes the CA to DIR/ca.pem for the client to trust. Prints `ready` once
it listens; runs until killed.
"""

import argparse
import datetime
import ipaddress
import os
import ssl
import sys
import threading
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult


def certificates(out_dir):
    """A CA (written to out_dir/ca.pem) and a server certificate for 127.0.0.1 signed by
    it; returns (cert_path, key_path)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "strata test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    with open(os.path.join(out_dir, "ca.pem"), "wb") as f:
        f.write(ca.public_bytes(pem))
    cert_path = os.path.join(out_dir, "server.pem")
    key_path = os.path.join(out_dir, "server.key")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(pem))
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                pem,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_path, key_path


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("port", type=int)
    p.add_argument("mode", choices=["plain", "starttls", "tls"])
    p.add_argument("--auth", help="USER:PASSWORD required from clients")
    a = p.parse_args()
    # aiosmtpd warns that implicit TLS is not "TLS" for AUTH; it is.
    warnings.filterwarnings("ignore")
    os.makedirs(a.dir, exist_ok=True)
    kwargs = {}
    if a.mode != "plain":
        cert, key = certificates(a.dir)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        if a.mode == "starttls":
            kwargs.update(tls_context=ctx, require_starttls=True)
        else:
            kwargs.update(ssl_context=ctx)
    if a.auth:
        user, password = a.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (
                getattr(auth_data, "login", None) == user.encode()
                and getattr(auth_data, "password", None) == password.encode()
            )
            # handled=False: aiosmtpd answers (235, or 535 on failure) itself.
            return AuthResult(success=ok, handled=False)

        # Implicit TLS is TLS already (aiosmtpd only counts STARTTLS as TLS).
        kwargs.update(
            authenticator=authenticator,
            auth_required=True,
            auth_require_tls=a.mode == "starttls",
        )
    controller = Controller(
        Mailbox(os.path.join(a.dir, "maildir")),
        hostname="127.0.0.1",
        port=a.port,
        server_hostname="127.0.0.1",
        **kwargs,
    )
    controller.start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    sys.exit(main())
