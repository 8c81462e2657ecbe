"""Preparing, planning and rehearsing a lent-GPU session: weights in carried parts, the wheels the device
lacks, the printed call-by-call plan (docs/gpu_session.md)."""
