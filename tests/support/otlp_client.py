"""Exports a counter, a gauge, a histogram and log records to a collector with OpenTelemetry's
Python SDK and its OTLP/HTTP (protobuf) exporters, as an instrumented application does.
Usage: otlp_client.py BASE_URL"""
import logging
import sys

from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

base = sys.argv[1].rstrip("/")
resource = Resource.create({"service.name": "shop", "service.version": "1.4.2", "service.instance.id": "shop-1"})

reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{base}/v1/metrics"), export_interval_millis=60_000)
meters = MeterProvider(resource=resource, metric_readers=[reader])
meter = meters.get_meter("checkout")
orders = meter.create_counter("orders", unit="{order}", description="Orders placed")
orders.add(3, {"payment": "card"})
orders.add(2, {"payment": "card"})
meter.create_gauge("room.temperature", unit="Cel").set(21.5)
duration = meter.create_histogram("rpc.duration", unit="ms")
for v in (3, 7, 12):
    duration.record(v, {"method": "get"})
meters.force_flush()
meters.shutdown()

logs = LoggerProvider(resource=resource)
logs.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{base}/v1/logs")))
log = logging.getLogger("checkout")
log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=logs))
log.setLevel(logging.INFO)
log.error("payment declined for order %d", 17)
log.warning("stock low")
log.info("order %d placed", 18)
logs.force_flush()
logs.shutdown()
print("exported")
