"""DVC stage entry points (one module per stage) and their shared library (`stages.lib`)."""
