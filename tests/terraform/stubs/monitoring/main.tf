# Stub: no resources; dashboard.tf (provider-free) stays and computes what the outputs show.
