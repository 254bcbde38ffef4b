"""gunicorn settings for production: `gunicorn -c gunicorn.conf.py 'web:create_app()'`.

Every value can be overridden by the environment (GUNICORN_CMD_ARGS or the FRONTDOOR_* below).
Workers are stateless: run as many web processes as the load needs, on one PostgreSQL.
"""

import multiprocessing
import os

bind = os.environ.get("FRONTDOOR_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("FRONTDOOR_WEB_WORKERS", multiprocessing.cpu_count() * 2 + 1))
worker_class = "gthread"
threads = int(os.environ.get("FRONTDOOR_WEB_THREADS", "4"))
timeout = 30
graceful_timeout = 30
keepalive = 5
# Behind a reverse proxy that terminates TLS: trust its X-Forwarded-* headers.
forwarded_allow_ips = os.environ.get("FRONTDOOR_FORWARDED_ALLOW_IPS", "127.0.0.1")
accesslog = "-"
errorlog = "-"
# Keep personal data out of access logs: no query strings (they can hold a child's name filter).
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)ss'
max_requests = 2000
max_requests_jitter = 200


def post_worker_init(worker):
    """Each worker has built its app: keep the collector off that heap (web.freeze_startup_heap)."""
    from web import freeze_startup_heap

    freeze_startup_heap()
