"""Training: state, losses, metrics, tasks, the jitted steps and the loop."""
