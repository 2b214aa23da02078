"""Federated averaging (McMahan et al. 2017), simulated: K clients train locally in parallel (`jax.vmap`).

Round r: every client starts from the global parameters, runs `local_steps` SGD steps on minibatches
of its own data, and the server averages the client parameters weighted by client data size.
Client axis work is one vmapped, jitted computation; with several devices the client axis is
sharded over them.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec


def partition(y: np.ndarray, num_clients: int, scheme: str, seed: int, classes_per_client: int = 2) -> list[np.ndarray]:
  """Client index sets: 'iid' (a random equal split) or 'label_skew' (sorted-by-label shards, McMahan's non-IID).

  label_skew sorts examples by label, cuts them into num_clients * classes_per_client shards and gives
  each client `classes_per_client` random shards, so most clients see only that many classes.
  """
  rng = np.random.default_rng(seed)
  n = len(y)
  if scheme == "iid":
    return [np.sort(s) for s in np.array_split(rng.permutation(n), num_clients)]
  if scheme == "label_skew":
    order = np.argsort(y, kind="stable")
    shards = np.array_split(order, num_clients * classes_per_client)
    pick = rng.permutation(len(shards)).reshape(num_clients, classes_per_client)
    return [np.sort(np.concatenate([shards[i] for i in row])) for row in pick]
  raise ValueError(f"Unknown partition '{scheme}' (config key federated.partitions); use 'iid' or 'label_skew'.")


def client_batches(clients: list[np.ndarray], local_steps: int, batch_size: int, rng: np.random.Generator) -> np.ndarray:
  """(K, local_steps, batch_size) indices: each client's minibatches for one round (sampled without replacement
  within a round when the client has enough data)."""
  out = np.empty((len(clients), local_steps, batch_size), np.int64)
  need = local_steps * batch_size
  for k, idx in enumerate(clients):
    draw = rng.permutation(idx) if len(idx) >= need else rng.choice(idx, need, replace=True)
    out[k] = draw[:need].reshape(local_steps, batch_size)
  return out


def make_round(loss_fn: Callable[[Any, dict[str, jax.Array]], jax.Array], lr: float) -> Callable:
  """`round(global_params, batches {(K, S, B, ...)}, weights (K,)) -> new global params`, jitted and vmapped."""

  def local_train(params: Any, batches: dict[str, jax.Array]) -> Any:
    def sgd(p, batch):
      grads = jax.grad(loss_fn)(p, batch)
      return jax.tree.map(lambda w, g: w - lr * g, p, grads), None

    return jax.lax.scan(sgd, params, batches)[0]

  @jax.jit
  def fed_round(global_params: Any, batches: dict[str, jax.Array], weights: jax.Array) -> Any:
    client_params = jax.vmap(local_train, in_axes=(None, 0))(global_params, batches)  # leaves (K, ...)
    w = weights / weights.sum()
    return jax.tree.map(lambda c: jnp.tensordot(w, c, axes=1), client_params)

  return fed_round


def shard_clients(batches: dict[str, np.ndarray]) -> dict[str, jax.Array]:
  """Puts the client axis on the devices (split over them when the count divides K, else one device)."""
  devices = jax.devices()
  k = len(next(iter(batches.values())))
  if len(devices) > 1 and k % len(devices) == 0:
    mesh = jax.sharding.Mesh(np.asarray(devices), ("clients",))
    spec = NamedSharding(mesh, PartitionSpec("clients"))
    return {n: jax.device_put(v, spec) for n, v in batches.items()}
  return {n: jnp.asarray(v) for n, v in batches.items()}


def run_fedavg(config: Any, workdir: str) -> dict[str, Any]:
  """Runs FedAvg for every partition in `config.federated.partitions`; writes fedavg.json and fedavg.png."""
  import json
  import os

  import optax

  from model_lib.config import validate
  from model_lib.data import load_dataset
  from model_lib.models import build_model
  from model_lib.train import tasks
  from model_lib.train.evaluate import evaluate_split
  from model_lib.train.state import create_train_state, rng_streams
  from model_lib.train.step import make_eval_step

  validate(config)
  fed = config.federated
  if config.model.get("batch_norm", False) or config.model.get("dropout", 0.0):
    raise ValueError("FedAvg here averages parameters only: use a model without batch_norm/dropout (config.model).")
  dataset = load_dataset(config.data)
  task = tasks.build_task(dataset.info)
  model = build_model(config.model, num_outputs=dataset.info.num_outputs)
  train, test = dataset.split("train"), dataset.split("test")
  init_state = create_train_state(model, optax.sgd(config.optimizer.learning_rate), train["x"][:2],
                                  rng_streams(config.seed)["params"])
  loss_fn = lambda p, b: task.loss(model.apply({"params": p}, b["x"], train=False), b)  # noqa: E731
  fed_round = make_round(loss_fn, config.optimizer.learning_rate)
  eval_step = jax.jit(make_eval_step(task))
  report: dict[str, Any] = {"num_clients": fed.num_clients, "rounds": fed.rounds, "local_steps": fed.local_steps,
                            "client_batch_size": fed.client_batch_size, "partitions": {}}
  for scheme in fed.partitions:
    clients = partition(train["y"], fed.num_clients, scheme, config.seed, fed.classes_per_client)
    weights = jnp.asarray([len(c) for c in clients], jnp.float32)
    rng = np.random.default_rng([config.seed, len(report["partitions"])])
    params, history = init_state.params, []
    for r in range(1, fed.rounds + 1):
      idx = client_batches(clients, fed.local_steps, fed.client_batch_size, rng)
      params = fed_round(params, shard_clients({"x": train["x"][idx], "y": train["y"][idx]}), weights)
      if r % fed.eval_every == 0 or r == fed.rounds:
        metrics, _, _ = evaluate_split(eval_step, init_state.replace(params=params), test,
                                       config.data.eval_batch_size, task)
        history.append({"round": r, "accuracy": metrics["accuracy"], "loss": metrics["loss"]})
    classes = [len(np.unique(train["y"][c])) for c in clients]
    report["partitions"][scheme] = {"history": history, "final_accuracy": history[-1]["accuracy"],
                                    "mean_classes_per_client": float(np.mean(classes))}
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "fedavg.json"), "w") as f:
    json.dump(report, f, indent=2)
  _plot(report, os.path.join(workdir, "fedavg.png"))
  return report


def _plot(report: dict[str, Any], out_path: str) -> None:
  from matplotlib.figure import Figure

  fig = Figure(figsize=(6, 4), dpi=100)
  ax = fig.add_subplot(1, 1, 1)
  for scheme, part in report["partitions"].items():
    ax.plot([h["round"] for h in part["history"]], [h["accuracy"] for h in part["history"]], "o-", label=scheme)
  ax.set_xlabel("round")
  ax.set_ylabel("test accuracy")
  ax.set_title(f"FedAvg, {report['num_clients']} clients, {report['local_steps']} local steps")
  ax.legend()
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(out_path)
