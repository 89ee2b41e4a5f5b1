"""``python -m LBPRiskModelLib serve --model BUNDLE_DIR [--host 127.0.0.1 --port 8000]``: run the calculator.

The bundle is verified before the server binds its port; a tampered or incompatible bundle
prints one line naming the file and the command exits 2. Uvicorn's access log is replaced by the
app's sanitised one (method, path, status, time — never a submitted value).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from ParaspinalLBPCore.errors import BadInputError, UserError


def add_cli(subparsers: argparse._SubParsersAction, name: str) -> None:
    """Register the ``serve`` sub-command."""
    parser = subparsers.add_parser(name, help="serve the web risk calculator for one model bundle")
    parser.add_argument("--model", required=True, help="model bundle directory (verified at start-up)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes (each loads and verifies the bundle; default 1)",
    )
    parser.add_argument("--no-access-log", action="store_true", help="do not log even method/path/status")
    parser.set_defaults(func=run)


def log_config(access_log: bool) -> dict:
    """Uvicorn's logging setup plus the app's sanitised access logger (also used by worker processes)."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg["loggers"]["LBPRiskModelLib.webapp"] = {
        "handlers": ["default"],
        "level": "INFO" if access_log else "WARNING",
        "propagate": False,
    }
    return cfg


def _no_delay_protocol() -> type:
    """Uvicorn's HTTP protocol with TCP_NODELAY set on every connection.

    asyncio sets TCP_NODELAY only when the socket's ``proto`` is IPPROTO_TCP; with ``--workers N``
    uvicorn binds the listening socket itself with proto 0, so without this Nagle's algorithm stays
    on and a keep-alive client waits for the delayed ACK on every response sent as headers + body.
    """
    import contextlib
    import socket

    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    class NoDelayHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
        def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def, override]
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                with contextlib.suppress(OSError):  # not a TCP socket after all: keep the default
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().connection_made(transport)

    return NoDelayHTTPProtocol


#: import path of the protocol class for uvicorn worker processes (``http=`` accepts "module:attr")
HTTP_PROTOCOL = "LBPRiskModelLib.webapp.serve_cli:NO_DELAY_PROTOCOL"


def __getattr__(name: str) -> type:
    """Build the protocol class on first use (uvicorn imports it by name in every worker)."""
    if name == "NO_DELAY_PROTOCOL":
        cls = _no_delay_protocol()
        globals()[name] = cls
        return cls
    raise AttributeError(name)


def run(args: argparse.Namespace) -> int:
    """Verify the bundle, then serve it with uvicorn until interrupted."""
    import uvicorn

    from LBPRiskModelLib.bundle import BundleError
    from LBPRiskModelLib.webapp.app import BUNDLE_ENV, create_app

    if args.workers < 1:
        raise BadInputError(f"--workers must be >= 1, got {args.workers}")
    try:
        app = create_app(args.model)  # verified here, before any port is bound
    except BundleError as exc:
        print(f"lbp-riskmodel serve: refusing to start: {exc}", file=sys.stderr)
        return 2
    print(
        f"Serving the LBP risk calculator on http://{args.host}:{args.port}/ (Ctrl+C to stop)",
        file=sys.stderr,
    )
    common = dict(
        host=args.host,
        port=args.port,
        access_log=False,  # uvicorn's own access log would be the request line; ours is sanitised
        server_header=False,
        proxy_headers=False,
        log_config=log_config(not args.no_access_log),
        http=HTTP_PROTOCOL,
    )
    if args.workers == 1:
        uvicorn.run(app, **common)
    else:
        os.environ[BUNDLE_ENV] = str(Path(args.model).resolve())
        uvicorn.run("LBPRiskModelLib.webapp.app:app_from_env", factory=True, workers=args.workers, **common)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m LBPRiskModelLib.webapp.serve_cli --model DIR``), same as ``serve``."""
    parser = argparse.ArgumentParser(prog="lbp-riskmodel serve")
    add_cli(parser.add_subparsers(dest="command", required=True), "serve")
    args = parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        return args.func(args)
    except UserError as exc:
        print(f"lbp-riskmodel serve: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
