"""``sensord run``: the online half. The loop (loop) takes readings off MQTT (mqtt,
mqttbuffer), routes and decodes them (ingest), scores them in each route's core pipeline
(routes), publishes alerts and states (publisher, delivery, retained), takes operators'
verdicts (desk), and reports its figures (stats, metrics, histogram, notify for systemd).
"""
