"""``hie web FILE``: run the message viewer for a production.

Listens on 127.0.0.1:8080 by default, where no login is asked (only this machine can connect).
On any other address a login is required: users come from ``--users FILE`` (default
``HIE_HOME/web-users``), one ``user:hash:role`` per line, role ``viewer`` or ``operator``;
``hie web --hash-password`` reads a password and prints its hash. Requests must name the viewer
by 127.0.0.1, localhost, the ``--host`` address (bound to every address: this machine's name)
or an ``--allowed-host`` name: a page elsewhere cannot reach it through a DNS name rebound to
this machine. ``--tls-cert``/``--tls-key`` serve HTTPS, and the session cookie is then Secure.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from hie.settings import Settings


def add_commands(subparsers: Any) -> None:
    """Add ``web`` to the CLI."""
    p = subparsers.add_parser(
        "web",
        help="run the message viewer (search, trace, resend) for a production",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", nargs="?", help="the production file (YAML/JSON/IRIS)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--users", metavar="FILE", help="users file (default HIE_HOME/web-users)")
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a name the viewer is reached by (repeat for several); requests naming any other "
        "host are refused. 127.0.0.1, localhost, the --host address (with --host 0.0.0.0: this "
        "machine's name) are always allowed",
    )
    p.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate (PEM)")
    p.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM)")
    p.add_argument(
        "--hash-password", action="store_true", help="read a password, print its hash, exit"
    )
    p.set_defaults(func=cmd_web)


def cmd_web(args: argparse.Namespace, settings: Settings) -> int:
    """Run the viewer in the foreground until Ctrl-C."""
    from hie.web.auth import hash_password

    if args.hash_password:
        password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline()
        print(hash_password(password.rstrip("\n")))
        return 0
    if not args.file:
        print("hie web: a production FILE is needed", file=sys.stderr)
        return 2
    from hie.config.loader import load_production
    from hie.web import create_web_app, is_loopback, serve
    from hie.web.server import reachable_names

    users_file = Path(args.users) if args.users else settings.home / "web-users"
    if args.users and not users_file.is_file():
        print(f"hie web: users file {users_file} does not exist", file=sys.stderr)
        return 2
    users = users_file.read_text(encoding="utf-8") if users_file.is_file() else ""
    production = load_production(args.file)
    app = create_web_app(
        settings,
        production,
        users=users,
        login_required=not is_loopback(args.host),
        allowed_hosts=reachable_names(args.host, args.allowed_host),
        https=bool(args.tls_cert),
    )
    serve(app, host=args.host, port=args.port, tls_cert=args.tls_cert, tls_key=args.tls_key)
    return 0
