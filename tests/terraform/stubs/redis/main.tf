# Stub: no resources.
