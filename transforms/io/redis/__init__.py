"""``redis://`` sink: commands, scripts, text encoding and the sink."""
