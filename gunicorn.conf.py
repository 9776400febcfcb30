"""gunicorn settings for `web:` (Heroku-style: $PORT, $WEB_CONCURRENCY)."""
import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads let a worker keep answering while one request waits on a store's API.
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = 30
graceful_timeout = 30
keepalive = 5
# The app writes one JSON access line per request itself (gateway/web/access.py), with
# the route template and the verified user; gunicorn's own line would only repeat it.
accesslog = None

# Prometheus multiprocess mode (gateway/metrics.py): each worker writes its samples to
# files in one directory and /metrics adds them up, so a scrape counts every worker.
# Set here, before any worker imports the app, for the workers to inherit; a fresh
# directory per run unless the platform names one.
# A reload (HUP) reads this file again with the variable already set: whether the
# directory is ours is remembered in the environment too.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    import tempfile

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.environ["GATEWAY_OWN_METRICS_DIR"] = \
        tempfile.mkdtemp(prefix="gateway-metrics-")


def on_starting(server):
    # A named directory may hold a previous run's files: counters start from zero.
    import glob

    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
    for path in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "*.db")):
        os.remove(path)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    # Only a directory made above is ours to remove; a named one is the platform's.
    own = os.environ.get("GATEWAY_OWN_METRICS_DIR")
    if own and own == os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        import shutil

        shutil.rmtree(own, ignore_errors=True)
