"""gunicorn for the DRF comparison: sync workers, 2 x cores + 1 (gunicorn's own advice)."""
import multiprocessing
import os

bind = os.environ.get("DRF_BIND", "127.0.0.1:8090")
workers = int(os.environ.get("DRF_WORKERS", 2 * multiprocessing.cpu_count() + 1))
worker_class = "sync"
preload_app = True
accesslog = None
errorlog = "-"
loglevel = "warning"
timeout = 60
