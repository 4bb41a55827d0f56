"""The framework every catalog pipeline runs on: options, spine, run, command line."""
