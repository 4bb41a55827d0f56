"""Sources and sinks, each named by an endpoint URI; `registry` maps a scheme to its module."""
