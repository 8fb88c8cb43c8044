"""CLI command `serve`: tf.data service servers in the foreground, on any machine.

python -m pipeline_core serve dispatcher --port P [--work-dir DIR]
python -m pipeline_core serve worker --dispatcher HOST:P --port Q [--worker-address HOST:Q]
                                     [--metrics-port M]

Each prints its address when ready and stops cleanly on SIGTERM or Ctrl-C. A worker
serves its readings on http://HOST:M/metrics (Prometheus text) and /json; M is Q + 1000
unless given. See "Scale out" in the README.
"""

from __future__ import annotations

import argparse


def _dispatcher(args: argparse.Namespace) -> int:
    from pipeline_core.service import run_dispatcher

    return run_dispatcher(args.port, args.work_dir, parent_pid=args.parent_pid)


def _worker(args: argparse.Namespace) -> int:
    from pipeline_core.service import run_worker

    return run_worker(
        args.dispatcher,
        args.port,
        args.worker_address,
        args.metrics_port,
        parent_pid=args.parent_pid,
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `serve dispatcher` and `serve worker` commands."""
    serve = subparsers.add_parser(
        "serve", help="run a tf.data service dispatcher or worker (scale a pipeline out)"
    )
    kinds = serve.add_subparsers(dest="server", metavar="SERVER", required=True)

    dispatcher = kinds.add_parser("dispatcher", help="the server workers and consumers meet at")
    dispatcher.add_argument("--port", type=int, required=True, help="port to serve on")
    dispatcher.add_argument(
        "--work-dir", help="folder for the dispatcher's journal (default: none kept)"
    )
    dispatcher.set_defaults(handler=_dispatcher)

    worker = kinds.add_parser("worker", help="a server that runs pipelines for consumers")
    worker.add_argument("--dispatcher", required=True, help="the dispatcher, HOST:PORT")
    worker.add_argument("--port", type=int, required=True, help="port to serve on")
    worker.add_argument(
        "--worker-address",
        help="HOST:PORT consumers reach this worker at (default: this host's name and --port)",
    )
    worker.add_argument(
        "--metrics-port", type=int, help="port of the readings endpoint (default: --port + 1000)"
    )
    worker.set_defaults(handler=_worker)
    for parser in (dispatcher, worker):
        parser.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
