"""``fungalzsl serve``: the web page for classifying uploaded images."""

from __future__ import annotations

from pathlib import Path

import typer

from fungalzsl.errors import fail
from fungalzsl.rundir import resolve_run_dir


def check_port_free(host: str, port: int) -> None:
    """Fail in one line if ``host:port`` cannot be listened on, before the model loads.

    The probe sets SO_REUSEADDR as uvicorn's own socket does: a port whose last server just stopped
    (connections in TIME_WAIT, nothing listening) is free to uvicorn, so it must be free here too."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            raise fail(
                f"cannot listen on {host}:{port} ({e.strerror or e})", "choose another --port"
            ) from None


def serve(
    run_dir: Path = typer.Argument(
        ..., help="Run directory from 'fungalzsl train', or the output folder of 'fungalzsl run' (its run/)."
    ),
    host: str = typer.Option(
        "127.0.0.1", help="Address to bind; the default keeps the page on this machine."
    ),
    port: int = typer.Option(7860, min=1, max=65535, help="TCP port."),
    descriptions: list[Path] = typer.Option(
        [], "--descriptions", help="Extra description sets (JSONL) offered as label sets on the page."
    ),
    max_files: int = typer.Option(64, min=1, help="Most images per upload."),
    max_file_mb: float = typer.Option(20.0, min=0.01, help="Largest accepted image file, in MB."),
    max_upload_mb: float = typer.Option(
        200.0, min=0.01, help="Largest request (all files of one upload together), in MB."
    ),
    queue_size: int = typer.Option(
        4,
        "--queue-size",
        min=1,
        help="Prediction requests in the server at once (one classifying, the rest "
        "uploading or waiting); the next gets 503 busy with Retry-After.",
    ),
    upload_timeout: float = typer.Option(
        30.0,
        "--upload-timeout",
        min=0.1,
        help="Seconds for a whole upload to arrive; a slower or stalled "
        "one gets 408 (raise it for large uploads over slow links).",
    ),
    device: str = typer.Option("cpu", help="Torch device."),
) -> None:
    """Serve a page to upload images (drag and drop), see per-class probabilities and download a CSV."""
    import uvicorn

    from fungalzsl.predict.classifier import Classifier
    from fungalzsl.runtime import configure_torch_threads
    from fungalzsl.serve.app import create_app

    run = resolve_run_dir(run_dir, "serve")
    for d in descriptions:
        if not d.is_file():
            raise fail(f"description set {d} does not exist", "check the --descriptions path")
    check_port_free(host, port)
    configure_torch_threads()
    clf = Classifier.load(run, device=device)
    app = create_app(
        clf,
        {d.stem: d for d in descriptions},
        max_files=max_files,
        max_file_mb=max_file_mb,
        max_upload_mb=max_upload_mb,
        max_queue=queue_size,
        upload_timeout=upload_timeout,
    )
    typer.echo(f"fungalzsl: serving {run} on http://{host}:{port}/  (Ctrl+C to stop)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
