#!/usr/bin/env python3
"""The dev mail catcher: an SMTP sink that keeps what it is sent and shows it over HTTP.

`make run` and the test harness start it (deploy/dev/suite.py); the messaging service sends
its mails here in dev and tests. SMTP is served by aiosmtpd; the HTTP API is the part of
Mailpit's that tools and the end-to-end tests use, with Mailpit's field names:

    GET    /api/v1/messages?start=0&limit=50   {total, count, start, messages: [summary]}, newest first
    GET    /api/v1/search?query=to:a@b.c ...    the same, filtered (to:, from:, subject:, words)
    GET    /api/v1/message/{ID}                 {ID, MessageID, From, To, Cc, Subject, Date, Text, HTML, ...}
                                                (ID `latest`: the newest)
    GET    /api/v1/message/{ID}/headers         {"Header-Name": ["value", ...]}
    GET    /api/v1/message/{ID}/raw             the message as received
    DELETE /api/v1/messages                     all of them, or {"IDs": [...]} only those
    GET    /                                    a page listing the mails, for a person

and one addition of its own, for tests of a sender's retries (not Mailpit's):

    PUT    /api/dev/faults   {"faults": [{"stage": "rcpt" | "data", "code": 451, "match": "x@y", "times": 2}]}
                             answer `code` at that stage (for recipients containing `match`, if
                             given; the next `times` times, if given); `{"faults": []}` clears them
    GET    /api/dev/faults   the faults in force

Memory is bounded: at most --max-messages mails (the oldest go first), each at most
--max-bytes. Nothing is written to disk: it forgets everything when it stops.

    mailcatcher.py [--host 127.0.0.1] [--smtp-port 1025] [--http-port 8025] [--address-file F]

Port 0 picks a free port; with --address-file the ports chosen are written there as JSON
({"smtp": n, "http": n}) once both are listening.

To stand in for a real relay (the SMTP client's TLS and AUTH tests): --tls-cert/--tls-key offer
STARTTLS and require it before mail (or, with --implicit-tls, speak TLS from the first byte);
--auth USER:PASSWORD requires AUTH (PLAIN or LOGIN) over TLS with those credentials.
--tls-self-signed DIR makes a throwaway certificate for `localhost` (DIR/cert.pem, the one a
client must trust; DIR/key.pem) and uses it as --tls-cert/--tls-key would.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import email
import email.policy
import email.utils
import html
import json
import os
import secrets
import signal
import ssl
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

def now_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def addresses(values: list[str]) -> list[dict]:
    return [{"Name": name, "Address": address} for name, address in email.utils.getaddresses(values) if address]


class Mail:
    """One message as received: the envelope, the raw bytes and what the API shows of it."""

    def __init__(self, envelope_from: str, recipients: list[str], raw: bytes):
        self.id = secrets.token_urlsafe(12)
        self.created = now_rfc3339()
        self.envelope_from = envelope_from
        self.recipients = list(recipients)
        self.raw = raw
        message = email.message_from_bytes(raw, policy=email.policy.default)
        self.headers: dict[str, list[str]] = {}
        for name, value in message.items():
            self.headers.setdefault(name, []).append(str(value))
        self.subject = str(message.get("Subject", ""))
        self.message_id = str(message.get("Message-ID", "")).strip("<>")
        self.sender = (addresses(message.get_all("From", [])) or [{"Name": "", "Address": envelope_from}])[0]
        self.to = addresses(message.get_all("To", []))
        self.cc = addresses(message.get_all("Cc", []))
        self.reply_to = addresses(message.get_all("Reply-To", []))
        date = message.get("Date")
        try:
            parsed = email.utils.parsedate_to_datetime(str(date)) if date else None
        except (TypeError, ValueError):
            parsed = None
        self.date = parsed.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z") if parsed else self.created
        self.text = self._part(message, "plain")
        self.html = self._part(message, "html")

    @staticmethod
    def _part(message: email.message.EmailMessage, subtype: str) -> str:
        part = message.get_body(preferencelist=(subtype,))
        if part is None or part.get_content_subtype() != subtype:
            return ""
        try:
            return part.get_content()
        except (LookupError, ValueError):
            return part.get_payload(decode=True).decode("utf-8", "replace")

    def summary(self) -> dict:
        snippet = " ".join(self.text.split())[:250]
        return {"ID": self.id, "MessageID": self.message_id, "Read": False, "From": self.sender, "To": self.to,
                "Cc": self.cc, "Bcc": self.bcc(), "ReplyTo": self.reply_to, "Subject": self.subject,
                "Created": self.created, "Tags": [], "Size": len(self.raw), "Attachments": 0, "Snippet": snippet}

    def bcc(self) -> list[dict]:
        shown = {a["Address"].lower() for a in self.to + self.cc}
        return [{"Name": "", "Address": r} for r in self.recipients if r.lower() not in shown]

    def detail(self) -> dict:
        return {"ID": self.id, "MessageID": self.message_id, "From": self.sender, "To": self.to, "Cc": self.cc,
                "Bcc": self.bcc(), "ReplyTo": self.reply_to, "ReturnPath": self.envelope_from, "Subject": self.subject,
                "Date": self.date, "Tags": [], "Text": self.text, "HTML": self.html, "Size": len(self.raw),
                "Inline": [], "Attachments": []}

    def matches(self, terms: list[tuple[str, str]]) -> bool:
        for field, value in terms:
            value = value.lower()
            if field == "to":
                haystack = " ".join([a["Address"] for a in self.to + self.cc] + self.recipients)
            elif field == "from":
                haystack = f"{self.sender['Name']} {self.sender['Address']} {self.envelope_from}"
            elif field == "subject":
                haystack = self.subject
            else:
                haystack = f"{self.subject} {self.text} {self.html}"
            if value not in haystack.lower():
                return False
        return True


def search_terms(query: str) -> list[tuple[str, str]]:
    """`to:a@b.c subject:"two words" word` → [("to", "a@b.c"), ("subject", "two words"), ("", "word")]."""
    terms, rest = [], query.strip()
    while rest:
        field = ""
        for prefix in ("to:", "from:", "subject:"):
            if rest.lower().startswith(prefix):
                field, rest = prefix[:-1], rest[len(prefix):]
                break
        if rest.startswith('"'):
            end = rest.find('"', 1)
            value, rest = (rest[1:end], rest[end + 1:]) if end > 0 else (rest[1:], "")
        else:
            value, _, rest = rest.partition(" ")
        if value:
            terms.append((field, value))
        rest = rest.lstrip()
    return terms


class Store:
    """The mails and the faults in force; shared by the SMTP loop and the HTTP threads."""

    def __init__(self, max_messages: int):
        self.lock = threading.Lock()
        self.mails: collections.deque[Mail] = collections.deque(maxlen=max_messages)
        self.faults: list[dict] = []

    def add(self, mail: Mail) -> None:
        with self.lock:
            self.mails.appendleft(mail)

    def newest_first(self) -> list[Mail]:
        with self.lock:
            return list(self.mails)

    def find(self, mail_id: str) -> Mail | None:
        with self.lock:
            if mail_id == "latest":
                return self.mails[0] if self.mails else None
            return next((m for m in self.mails if m.id == mail_id), None)

    def delete(self, ids: list[str] | None) -> None:
        with self.lock:
            if ids is None:
                self.mails.clear()
            else:
                keep = [m for m in self.mails if m.id not in set(ids)]
                self.mails.clear()
                self.mails.extend(keep)

    def fault(self, stage: str, address: str = "") -> tuple[int, str] | None:
        """The fault to answer at `stage` for `address` now, if any (counting it down)."""
        with self.lock:
            for fault in self.faults:
                if fault["stage"] != stage or (fault.get("match") and fault["match"].lower() not in address.lower()):
                    continue
                if fault.get("times") is not None:
                    if fault["times"] <= 0:
                        continue
                    fault["times"] -= 1
                code = int(fault["code"])
                default = "try again later" if code < 500 else "rejected"
                return code, fault.get("message") or default
        return None


class Handler:
    """aiosmtpd's handler: faults first, then the mail is kept."""

    def __init__(self, store: Store):
        self.store = store

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        fault = self.store.fault("rcpt", address)
        if fault:
            return f"{fault[0]} {enhanced(fault[0])} {fault[1]}"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        fault = self.store.fault("data", " ".join(envelope.rcpt_tos))
        if fault:
            return f"{fault[0]} {enhanced(fault[0])} {fault[1]}"
        self.store.add(Mail(envelope.mail_from or "", envelope.rcpt_tos, envelope.original_content or envelope.content))
        return "250 2.0.0 OK: queued"


def enhanced(code: int) -> str:
    """An RFC 3463 status code to go with a reply code."""
    return "4.0.0" if 400 <= code < 500 else "5.0.0" if code >= 500 else "2.0.0"


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Mail catcher</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse;width:100%}}
td,th{{border-bottom:1px solid #ddd;padding:.4em;text-align:left}}pre{{white-space:pre-wrap}}</style></head>
<body><h1>{title}</h1>{body}</body></html>"""


def page_list(mails: list[Mail]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(m.created)}</td><td>{html.escape(m.sender['Address'])}</td>"
        f"<td>{html.escape(', '.join(a['Address'] for a in m.to))}</td>"
        f"<td><a href=\"/view/{html.escape(m.id)}\">{html.escape(m.subject or '(no subject)')}</a></td></tr>"
        for m in mails)
    body = (f"<p>{len(mails)} mail(s), newest first. API: <code>/api/v1/messages</code>.</p>"
            f"<table><tr><th>received</th><th>from</th><th>to</th><th>subject</th></tr>{rows}</table>")
    return PAGE.format(title="Mail catcher", body=body)


def page_mail(mail: Mail) -> str:
    headers = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                      for k, values in mail.headers.items() for v in values)
    # The HTML part is shown in a sandboxed frame: its scripts never run, its links open nothing here.
    frame = (f"<h2>HTML</h2><iframe sandbox style=\"width:100%;height:30em;border:1px solid #ddd\" "
             f"srcdoc=\"{html.escape(mail.html, quote=True)}\"></iframe>") if mail.html else ""
    body = (f"<p><a href=\"/\">all mails</a></p><table>{headers}</table>"
            f"<h2>Text</h2><pre>{html.escape(mail.text)}</pre>{frame}")
    return PAGE.format(title=html.escape(mail.subject or "(no subject)"), body=body)


def make_http_handler(store: Store):
    class HTTPHandler(BaseHTTPRequestHandler):
        server_version = "mailcatcher"

        def log_message(self, format, *args):  # noqa: A002 - the base class's name
            pass

        def send(self, status: int, body: bytes | str, content_type: str) -> None:
            data = body.encode() if isinstance(body, str) else body
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def json(self, value, status: int = 200) -> None:
            self.send(status, json.dumps(value), "application/json")

        def problem(self, status: int, detail: str) -> None:
            self.send(status, detail + "\n", "text/plain; charset=utf-8")

        def body_json(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length > 1_000_000:
                raise ValueError("body too large")
            raw = self.rfile.read(length) if length else b""
            return json.loads(raw) if raw.strip() else None

        def listing(self, mails: list[Mail], query: dict) -> None:
            try:
                start = max(0, int(query.get("start", ["0"])[0]))
                limit = max(1, min(1000, int(query.get("limit", ["50"])[0])))
            except ValueError:
                return self.problem(400, "start and limit are integers")
            page = mails[start:start + limit]
            self.json({"total": len(mails), "unread": len(mails), "count": len(page), "messages_count": len(mails),
                       "start": start, "tags": [], "messages": [m.summary() for m in page]})

        def do_GET(self):
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            parts = [p for p in url.path.split("/") if p]
            if parts == []:
                return self.send(200, page_list(store.newest_first()), "text/html; charset=utf-8")
            if len(parts) == 2 and parts[0] == "view":
                mail = store.find(parts[1])
                return self.send(200, page_mail(mail), "text/html; charset=utf-8") if mail else self.problem(404, "no such mail")
            if parts == ["api", "v1", "messages"]:
                return self.listing(store.newest_first(), query)
            if parts == ["api", "v1", "search"]:
                terms = search_terms(query.get("query", [""])[0])
                return self.listing([m for m in store.newest_first() if m.matches(terms)], query)
            if len(parts) in (4, 5) and parts[:3] == ["api", "v1", "message"]:
                mail = store.find(parts[3])
                if mail is None:
                    return self.problem(404, "no such mail")
                if len(parts) == 4:
                    return self.json(mail.detail())
                if parts[4] == "headers":
                    return self.json(mail.headers)
                if parts[4] == "raw":
                    return self.send(200, mail.raw, "text/plain; charset=utf-8")
            if parts == ["api", "dev", "faults"]:
                with store.lock:
                    return self.json({"faults": store.faults})
            if parts == ["livez"]:
                return self.send(200, "ok\n", "text/plain")
            return self.problem(404, "not found")

        do_HEAD = do_GET

        def do_DELETE(self):
            if urlsplit(self.path).path.rstrip("/") != "/api/v1/messages":
                return self.problem(404, "not found")
            try:
                body = self.body_json()
            except ValueError:
                return self.problem(400, "the body is JSON: {\"IDs\": [...]} or nothing")
            ids = body.get("IDs") if isinstance(body, dict) else None
            if ids is not None and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
                return self.problem(400, "IDs is a list of strings")
            store.delete(ids)  # no IDs: all of them
            self.send(200, "ok", "text/plain")

        def do_PUT(self):
            if urlsplit(self.path).path.rstrip("/") != "/api/dev/faults":
                return self.problem(404, "not found")
            try:
                body = self.body_json()
            except ValueError:
                return self.problem(400, "the body is JSON")
            faults = body.get("faults") if isinstance(body, dict) else None
            if not isinstance(faults, list):
                return self.problem(400, "{\"faults\": [...]} is expected")
            for fault in faults:
                if (not isinstance(fault, dict) or fault.get("stage") not in ("rcpt", "data")
                        or not isinstance(fault.get("code"), int) or not 400 <= fault["code"] <= 599
                        or not isinstance(fault.get("match", ""), str)
                        or not (fault.get("times") is None or isinstance(fault["times"], int))):
                    return self.problem(400, "a fault is {stage: rcpt|data, code: 400-599, match?: string, times?: int}")
            with store.lock:
                store.faults = [dict(f) for f in faults]
                return self.json({"faults": store.faults})

    return HTTPHandler


def authenticator(credentials: str | None):
    """aiosmtpd's check of AUTH: the one user and password given, nothing else."""
    user, _, password = (credentials or "").partition(":")

    def check(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user
              and auth_data.password.decode() == password)
        return AuthResult(success=ok, handled=False)
    return check


def self_signed(directory: Path) -> tuple[str, str]:
    """A certificate for localhost, valid for a day, and its key, written to directory."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
                   .not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                               x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return str(cert_path), str(key_path)


async def serve(args) -> None:
    store = Store(args.max_messages)
    loop = asyncio.get_running_loop()
    handler = Handler(store)
    context = None
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
    starttls = context if context and not args.implicit_tls else None
    smtp = await loop.create_server(
        lambda: SMTP(handler, hostname="mailcatcher", ident="mailcatcher (dev)", data_size_limit=args.max_bytes,
                     decode_data=False, enable_SMTPUTF8=True, tls_context=starttls, require_starttls=starttls is not None,
                     auth_required=bool(args.auth), auth_require_tls=not args.implicit_tls, authenticator=authenticator(args.auth)),
        host=args.host, port=args.smtp_port, ssl=context if args.implicit_tls else None)
    smtp_port = smtp.sockets[0].getsockname()[1]
    http = ThreadingHTTPServer((args.host, args.http_port), make_http_handler(store))
    http.daemon_threads = True
    threading.Thread(target=http.serve_forever, name="http", daemon=True).start()
    http_port = http.server_address[1]
    if args.address_file:
        tmp = Path(str(args.address_file) + ".tmp")
        tmp.write_text(json.dumps({"smtp": smtp_port, "http": http_port}))
        os.replace(tmp, args.address_file)
    print(f"mailcatcher: smtp {args.host}:{smtp_port}, http://{args.host}:{http_port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    smtp.close()
    http.shutdown()
    # Nothing is kept on disk, so nothing is lost by going now; waiting for open SMTP sessions
    # to end would let a client that never says QUIT hold the catcher up.
    sys.stdout.flush()
    os._exit(0)


def main() -> int:
    # A parent may have spawned this with signals blocked (a Swift test process's threads block
    # them): SIGTERM must stop the catcher whoever started it.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--smtp-port", type=int, default=1025)
    p.add_argument("--http-port", type=int, default=8025)
    p.add_argument("--address-file", type=Path)
    p.add_argument("--max-messages", type=int, default=5000)
    p.add_argument("--max-bytes", type=int, default=10 * 1024 * 1024)
    p.add_argument("--tls-cert", help="PEM certificate chain: offer STARTTLS (and require it)")
    p.add_argument("--tls-key", help="PEM private key of --tls-cert")
    p.add_argument("--implicit-tls", action="store_true", help="TLS from the first byte instead of STARTTLS")
    p.add_argument("--auth", metavar="USER:PASSWORD", help="require AUTH with these credentials")
    p.add_argument("--tls-self-signed", type=Path, metavar="DIR", help="a throwaway certificate for localhost, written to DIR")
    args = p.parse_args()
    if args.tls_self_signed:
        args.tls_cert, args.tls_key = self_signed(args.tls_self_signed)
    if bool(args.tls_cert) != bool(args.tls_key) or (args.implicit_tls and not args.tls_cert):
        p.error("--tls-cert and --tls-key go together, and --implicit-tls needs them")
    try:
        asyncio.run(serve(args))
    except OSError as e:
        print(f"mailcatcher: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
