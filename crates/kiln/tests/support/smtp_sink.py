"""A real SMTP server for the reporters' tests (aiosmtpd), recording each accepted message as one JSON line.

    python smtp_sink.py --port-file F --record R [--starttls CERT KEY] [--implicit-tls CERT KEY]
                        [--auth USER:PASSWORD] [--reject-rcpt ADDRESS] [--tempfail-data N] [--hang-data]

It binds 127.0.0.1 on a free port and writes the port to F once it listens. Each message accepted goes to R as
{"mail_from", "rcpt_tos", "data", "tls", "auth_user"}. On demand it answers 550 to RCPT for one address, 451 to
the first N DATA commands, or never answers DATA (a hung server). With --starttls it offers STARTTLS and requires
it before MAIL; with --implicit-tls it speaks TLS from the first byte; with --auth it requires AUTH (over TLS).
"""

import argparse
import asyncio
import json
import ssl

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, SMTP


class Sink:
    def __init__(self, args):
        self.args = args
        self.tempfails_left = args.tempfail_data

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.args.reject_rcpt and address.lower() == self.args.reject_rcpt.lower():
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.args.hang_data:
            await asyncio.sleep(3600)
        if self.tempfails_left > 0:
            self.tempfails_left -= 1
            return "451 4.3.0 try again later"
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", "replace"),
            # An implicit-TLS server speaks nothing but TLS; aiosmtpd sets session.ssl for STARTTLS only.
            "tls": session.ssl is not None or bool(self.args.implicit_tls),
            "auth_user": session.auth_data if isinstance(session.auth_data, str) else None,
        }
        with open(self.args.record, "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
        return "250 2.0.0 queued as kiln-test"


def authenticator(expected):
    user, _, password = expected.partition(":")

    def check(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login.decode() == user and auth_data.password.decode() == password
        return AuthResult(success=ok, auth_data=auth_data.login.decode() if ok else None)

    return check


def context(cert, key):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--record", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--starttls", nargs=2, metavar=("CERT", "KEY"))
    parser.add_argument("--implicit-tls", nargs=2, metavar=("CERT", "KEY"))
    parser.add_argument("--auth")
    parser.add_argument("--reject-rcpt")
    parser.add_argument("--tempfail-data", type=int, default=0)
    parser.add_argument("--hang-data", action="store_true")
    args = parser.parse_args()

    kwargs = {}
    if args.starttls:
        kwargs["tls_context"] = context(*args.starttls)
        kwargs["require_starttls"] = True
    if args.auth:
        kwargs["authenticator"] = authenticator(args.auth)
        kwargs["auth_required"] = True
        kwargs["auth_require_tls"] = True
    ssl_context = context(*args.implicit_tls) if args.implicit_tls else None

    if args.port == 0:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            args.port = probe.getsockname()[1]
    controller = Controller(
        Sink(args), hostname="127.0.0.1", port=args.port, ssl_context=ssl_context, server_kwargs=kwargs,
        server_hostname="localhost",
    )
    controller.start()
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(args.port))
    import os

    os.replace(args.port_file + ".tmp", args.port_file)
    import threading

    try:
        threading.Event().wait()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
