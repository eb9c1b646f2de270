"""`roomclf serve`: classify single photos over HTTP with the registered champion."""
import click

from roomclf.commands.options import allow_host_option
from roomclf.models.registry import DEFAULT_ONNX_URI


@click.command("serve")
@click.option("--model", default=DEFAULT_ONNX_URI, show_default=True,
              help="models:/NAME@ALIAS (follows the alias), models:/NAME/VERSION, or a .onnx file or folder.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option("--max-batch", default=32, show_default=True, type=click.IntRange(1, 1024),
              help="Most photos in one POST /predict/batch (more: 413).")
@click.option("--max-mb", default=20.0, show_default=True, type=click.FloatRange(0.01),
              help="Largest photo accepted, in MB (larger: 413).")
@click.option("--poll", "poll_seconds", default=30.0, show_default=True, type=click.FloatRange(0),
              help="Seconds between checks whether the alias moved to another version; 0 = only on POST /reload.")
@click.option("--threads", default=None, type=click.IntRange(1, 64),
              help="onnxruntime threads per inference.  [default: 1]")
@click.option("--slots", default=None, type=click.IntRange(1, 256),
              help="Inferences at once; more requests wait their turn [default: CPUs / threads].")
@click.option("--max-requests", default=None, type=click.IntRange(1, 100_000),
              help="Requests admitted at once (reading their photos or being classified); more wait their turn "
                   "before their upload is read.  [default: 4 x slots]")
@click.option("--max-inflight-mb", default=None, type=click.FloatRange(0.01),
              help="Upload megabytes admitted requests may hold at once (each counts its Content-Length); more "
                   "wait their turn.  [default: one full /predict/batch]")
@click.option("--queue-seconds", default=60.0, show_default=True, type=click.FloatRange(0.1),
              help="How long a request waits for admission before it gets 503.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]), help="Server log level.")
@allow_host_option
def serve(model, host, port, max_batch, max_mb, poll_seconds, threads, slots, max_requests, max_inflight_mb,
          queue_seconds, log_level, allow_hosts):
    """Serve the room model over HTTP: a page to drop a photo on, and a JSON API.

    \b
    Endpoints:
      POST /predict         one photo (multipart field 'file') -> class, confidence,
                            probabilities, attribute tags, model name/version
      POST /predict/batch   several photos (multipart fields 'files')
      GET  /model           version, classes, trained attributes, metrics
      GET  /health          liveness and the version in service
      POST /reload          switch to the version the alias points at now
      GET  /                drop a photo, see the result
    Bad input: empty 400, not an image or not JPEG/PNG/WebP 415, too large /
    too many 413, undecodable 422 (with the reason); a Host other than
    localhost, --host and --allow-host 400; no admission within
    --queue-seconds 503.

    \b
    Examples:
      roomclf serve
      roomclf serve --model models:/roomclf-onnx/3 --port 9000 --poll 0
      curl -F file=@photo.jpg http://127.0.0.1:8080/predict
    """
    import uvicorn

    from serving.app import create_app
    from serving.uploads import MB

    app = create_app(model, max_batch=max_batch, max_bytes=int(max_mb * MB), poll_seconds=poll_seconds,
                     threads=threads, slots=slots, host=host, allow_hosts=allow_hosts, max_requests=max_requests,
                     max_inflight_bytes=int(max_inflight_mb * MB) if max_inflight_mb else None,
                     queue_seconds=queue_seconds)
    cur = app.state.holder.current
    click.echo(f"serving {cur.ref.name} version {cur.ref.version or '(file)'} on http://{host}:{port}/ "
               f"(onnxruntime: {cur.model.provider})", err=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=10)
