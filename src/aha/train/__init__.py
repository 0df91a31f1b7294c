"""What every trainer shares — batch layouts, the completion forward, the optimizer update with its
non-finite guard, optimizer set-up, checkpoints, stop signals — and no stage logic."""
