"""What crosses MQTT, as pure functions: topic filters and stream ids (topics), reading
payloads decoded (payloads), what sensord publishes (published), and Home Assistant's
discovery messages (homeassistant). No sockets here: the daemon does the sending.
"""
