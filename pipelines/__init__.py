"""The catalog of streaming pipelines built from `transforms`, and the command line to run them."""
