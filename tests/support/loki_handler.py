"""Sends log records to a collector's Loki push API with python-logging-loki's handler, as an
application using it does. Usage: loki_handler.py BASE_URL COUNT"""
import logging
import sys

import logging_loki

base, count = sys.argv[1].rstrip("/"), int(sys.argv[2])
handler = logging_loki.LokiHandler(url=f"{base}/loki/api/v1/push", tags={"application": "billing"}, version="1")
log = logging.getLogger("billing")
log.addHandler(handler)
log.setLevel(logging.INFO)
for i in range(count):
    log.warning("invoice %d overdue", i, extra={"tags": {"service": "billing"}})
print("sent")
