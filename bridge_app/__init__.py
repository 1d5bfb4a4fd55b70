"""The composition root: the command line and the wiring of config, connector and runtime.

It sits beside the runtime (``bridge/``) and the connectors (``connectors/``) and is the one
place that knows both; ``bridge/`` imports neither it nor any connector.
"""
