"""Parses an OpenMetrics exposition (stdin) with the official Prometheus Python client's parser
(prometheus-client, pinned in tests/compat/install.sh) and prints its samples as JSON:
[{"family": ..., "type": ..., "name": ..., "labels": {...}, "value": ...}]. A parse error exits 1.
"""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append({"family": family.name, "type": family.type, "name": s.name, "labels": s.labels, "value": s.value})
print(json.dumps(out))
