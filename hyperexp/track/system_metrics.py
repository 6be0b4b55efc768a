"""CPU, memory, disk, network (and GPU) use of the process's machine as ``system/*`` metrics,
sampled by MLflow's own monitors and sent through the run's outbox: an outage delays the samples,
loses none (MLflow's sampler writes to the store itself and stops at the first failed request)."""

from __future__ import annotations

import logging
import threading
import time

from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

from hyperexp.track.outbox import Outbox

log = logging.getLogger("hyperexp")
PREFIX = "system/"
STEP_KEY = PREFIX + "cpu_utilization_percentage"  # every sample has it: where a continued run goes on


class SystemMetrics:
    """Samples every ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` seconds (MLflow's setting, 10 s by
    default) from a daemon thread until stopped; a continued run goes on from its last step."""

    def __init__(self, client: MlflowClient, outbox: Outbox):
        self.outbox = outbox
        self.monitor = SystemMetricsMonitor(outbox.run_id, tracking_uri=outbox.tracking_uri)  # its collectors only
        history = client.get_metric_history(outbox.run_id, STEP_KEY)
        self.step = max((metric.step + 1 for metric in history), default=0)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._sample, name=f"system-{outbox.run_id[:8]}", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stopped.wait(self.monitor.sampling_interval):
            self.monitor.collect_metrics()
            values = self.monitor.aggregate_metrics()
            for collector in self.monitor.monitors:
                collector.clear_metrics()
            now = int(time.time() * 1000)
            metrics = [Metric(PREFIX + key, float(value), now, self.step) for key, value in values.items()]
            try:
                self.outbox.log_batch(metrics=metrics)
            except OSError as error:  # a full disk: the run itself reports it
                log.debug("system metrics of run %s not queued: %s", self.outbox.run_id, error)
            self.step += 1

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=30)
