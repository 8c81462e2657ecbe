# Sourced by gpu_benchmarks.sh and gpu_gate.sh: the budget overrides that turn the gpu budget's training loop
# into the straightforward one the speed benchmark compares against (same model, data, effective batch and learning):
# fixed micro-batches of 16 essays, eager attention, plain AdamW, a host read of the loss every micro-batch,
# collation in the loop.
STRAIGHTFORWARD=(batch_size=16 speed.attention=eager speed.fused_optimizer=false speed.finite_check_every=1
                 speed.loader_workers=0 speed.pin_memory=false)
