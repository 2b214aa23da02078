"""Scale-out: mesh validation, sharding rules, logical names; 8-device checks run this file in a subprocess.

Run as a script (`XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/test_parallel.py CHECK`) it
prints one JSON line of results; the tests below start it so the rest of the suite keeps its single device.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
B = 16  # Global batch of the subprocess checks.


def _devices_check(check: str, timeout: int = 900) -> dict:
  # -O0 in the LLVM backend only: sharding/partitioning is unchanged and compiles are ~2x faster on 2 cores.
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0",
         "MODEL_LIB_CACHE_DIR": "", "PYTHONPATH": REPO}
  proc = subprocess.run([sys.executable, os.path.abspath(__file__), check], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=timeout)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- in-process (1 device)


def _config(**mesh):
  from model_lib.config import base_config

  c = base_config()
  c.train.num_steps = 1
  c.data.batch_size = 32
  for k, v in mesh.items():
    c.mesh[k] = v
  return c


def test_mesh_shape_resolves_the_free_axis():
  from model_lib.parallel import mesh_shape

  assert mesh_shape(_config(), 8) == {"data": 8, "fsdp": 1, "tensor": 1}
  assert mesh_shape(_config(fsdp=2, tensor=2), 8) == {"data": 2, "fsdp": 2, "tensor": 2}
  assert mesh_shape(_config(data=1, fsdp=-1, tensor=2), 8) == {"data": 1, "fsdp": 4, "tensor": 2}
  assert mesh_shape(_config(), 1) == {"data": 1, "fsdp": 1, "tensor": 1}


@pytest.mark.parametrize("mesh,devices,needle", [
    ({"data": 2, "fsdp": 2, "tensor": 1}, 8, "mesh.data x mesh.fsdp x mesh.tensor = 2 x 2 x 1 = 4 must equal the 8 "
                                            "devices; set one of them to -1"),
    ({"tensor": 3}, 8, "mesh.fsdp=1 x mesh.tensor=3 = 3 does not divide the 8 devices"),
    ({"data": -1, "fsdp": -1}, 8, "At most one of mesh.data/fsdp/tensor may be -1"),
    ({"fsdp": 0}, 8, "mesh.fsdp must be -1 (the rest of the devices) or >= 1, got 0"),
    ({"data": 1, "fsdp": 1, "tensor": 8}, 8, None),  # Valid: batch over 1 shard.
    ({"data": -1}, 64, "data.batch_size=32 must be divisible by mesh.data x mesh.fsdp = 64"),
])
def test_mesh_validation_errors_are_one_line_and_name_the_key(mesh, devices, needle):
  from model_lib.config import ConfigError
  from model_lib.parallel import mesh_shape

  if needle is None:
    mesh_shape(_config(**mesh), devices)
    return
  with pytest.raises(ConfigError) as e:
    mesh_shape(_config(**mesh), devices)
  assert needle in str(e.value) and "\n" not in str(e.value)


def test_config_validation_of_parallel_keys():
  from model_lib.config import ConfigError, validate

  for key, value, needle in [("mesh.rules", "zero", "mesh.rules must be one of auto, dp, fsdp, tp, fsdp_tp"),
                             ("parallel.mode", "pjit", "parallel.mode must be 'jit' or 'pmap'"),
                             ("train.profile_steps", "5,3", "train.profile_steps must be 'a,b' with 1 <= a <= b"),
                             ("train.profile_steps", "x", "train.profile_steps must be 'a,b'"),
                             ("mesh.tensor", -2, "mesh.tensor must be -1")]:
    c = _config()
    section, name = key.split(".")
    c[section][name] = value
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
      validate(c)
  c = _config(tensor=2)
  c.parallel.mode = "pmap"
  with pytest.raises(ConfigError, match="parallel.mode=pmap is data parallelism only"):
    validate(c)


def test_rule_sets_shard_largest_divisible_axis_and_keep_uneven_dims_replicated():
  from jax.sharding import PartitionSpec as P

  from model_lib.parallel import param_spec, resolve_rules

  sizes = {"data": 1, "fsdp": 4, "tensor": 2}
  assert resolve_rules("auto", sizes) == "fsdp_tp"
  assert resolve_rules("auto", {"data": 8, "fsdp": 1, "tensor": 1}) == "dp"
  assert resolve_rules("auto", {"data": 2, "fsdp": 4, "tensor": 1}) == "fsdp"
  assert resolve_rules("auto", {"data": 4, "fsdp": 1, "tensor": 2}) == "tp"
  assert param_spec((64, 256), ("embed", "mlp"), "dp", sizes) == P()
  assert param_spec((64, 256), ("embed", "mlp"), "fsdp", sizes) == P(None, "fsdp")  # The larger axis.
  assert param_spec((64, 256), ("embed", "mlp"), "tp", sizes) == P(None, "tensor")  # Column-parallel.
  assert param_spec((256, 64), ("mlp", "embed"), "tp", sizes) == P("tensor")  # Row-parallel.
  assert param_spec((64, 256), ("embed", "mlp"), "fsdp_tp", sizes) == P("fsdp", "tensor")
  assert param_spec((64, 4, 16), ("embed", "heads", "kv"), "fsdp_tp", sizes) == P("fsdp", "tensor")
  assert param_spec((66, 64), ("vocab", "embed"), "fsdp_tp", sizes) == P("tensor", "fsdp")
  assert param_spec((65, 64), ("vocab", "embed"), "fsdp_tp", sizes) == P(None, "fsdp")  # 65 splits neither way.
  assert param_spec((10,), ("classes",), "fsdp", sizes) == P()  # Uneven: replicated.
  assert param_spec((64, 10), ("embed", None), "fsdp", sizes) == P("fsdp")  # Unnamed axes are never sharded.
  assert param_spec((), None, "fsdp_tp", sizes) == P()


@pytest.mark.parametrize("model_cfg,shape", [
    ({"name": "mlp", "hidden_sizes": (16, 8), "batch_norm": True}, (2, 12)),
    ({"name": "cnn", "features": (4, 8), "dense_sizes": (16,), "batch_norm": True}, (2, 12, 12)),
    ({"name": "cnn", "features": (4,), "dense_sizes": (16, 16)}, (2, 12, 12)),
])
def test_mlp_and_cnn_params_carry_logical_names(model_cfg, shape):
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  import ml_collections

  from model_lib.models import build_model
  from model_lib.parallel import abstract_variables, annotated_params

  model = build_model(ml_collections.ConfigDict(model_cfg), num_outputs=3)
  x = jnp.zeros(shape)
  boxed = annotated_params(abstract_variables(model, x))
  is_box = lambda v: isinstance(v, nn.Partitioned)  # noqa: E731
  names = {jax.tree_util.keystr(p): leaf.names for p, leaf in jax.tree_util.tree_flatten_with_path(boxed, is_box)[0]}
  plain = jax.tree_util.tree_flatten_with_path(model.init(jax.random.key(0), x)["params"])[0]
  assert len(names) == len(plain)  # Every parameter is named, and `params` itself holds plain arrays.
  assert all(hasattr(leaf, "shape") and not isinstance(leaf, nn.Partitioned) for _, leaf in plain)
  dense = sorted(k for k in names if k.startswith("['Dense_") and k.endswith("['kernel']"))
  head = names[dense[-1]]
  assert head[1] == "classes"
  assert [names[k] for k in dense[:-1]] == [("embed", "mlp"), ("mlp", "embed")][:len(dense) - 1]  # Alternating.
  if model_cfg["name"] == "cnn":
    assert names["['Conv_0']['kernel']"] == ("conv_h", "conv_w", "conv_in", "conv_out")
  if model_cfg.get("batch_norm"):
    assert names["['BatchNorm_0']['scale']"] in (("mlp",), ("conv_out",))


# ----------------------------------------------------------------------------- 8-device subprocesses


@pytest.mark.slow
def test_gpt_and_vit_train_identically_under_dp_fsdp_tp_and_fsdp_tp():
  results = _devices_check("equivalence")
  # {GPT, ViT} x {SGD, Adam}, plus a scanned + rematerialised GPT with Adam, x {DP=8, FSDP=8, TP=2 x DP=4, FSDP=2 x TP=4}.
  assert len(results) == 20
  for r in results:
    loss_tol, param_tol = (1e-5, 1e-5) if r["optimizer"] == "sgd" else (1e-5, 1e-4)
    assert r["loss_diff"] < loss_tol and r["param_diff"] < param_tol, r
    assert r["compiles"] == 1, r


def test_fsdp_shards_params_and_optimizer_state_and_checkpoints_restore_on_any_mesh():
  r = _devices_check("sharding")
  assert r["init_equal"]  # Born sharded (FSDP=8) gives exactly the 1-device initial state.
  # DP: every device holds every byte; FSDP=8: each holds an eighth (plus replicated scalars such as Adam's count).
  assert r["dp"]["device_bytes"] == r["dp"]["total_bytes"]
  assert r["fsdp"]["device_bytes"] <= r["fsdp"]["total_bytes"] / 8 + 64
  assert r["fsdp"]["replicated_arrays"] == 0  # Only scalars (step, lr_scale, Adam's counts) are replicated.
  # 8-way FSDP -> 4-way DP -> 1 device: bit-identical values, each restored into the target's sharding.
  assert r["restore_dp4_equal"] and r["restore_1dev_equal"]
  assert r["restore_dp4_devices"] == 4 and r["restore_1dev_devices"] == 1


def test_pmap_matches_jit_including_batch_norm_statistics():
  r = _devices_check("pmap")
  for opt, tol in (("sgd", 1e-5), ("adam", 1e-4)):
    for other in ("pmap", "jit8"):
      d = r[opt][other]
      assert d["loss"] < 1e-5 and d["params"] < tol and d["batch_stats"] < 1e-5, (opt, other, d)


# ----------------------------------------------------------------------------- the subprocess side


def _gpt_vit_setup(name: str):
  import numpy as np

  from model_lib.train import tasks

  rng = np.random.default_rng(0)
  if name.startswith("gpt"):
    model = {"name": "gpt", "num_layers": 1, "num_heads": 4, "embed_dim": 32, "mlp_dim": 64, "max_len": 8}
    if name == "gpt_scan":  # Params stacked on a 'layers' axis that the rules must leave unsharded.
      model.update(num_layers=2, scan_layers=True, remat="dots")
    batches = []
    for _ in range(3):
      t = rng.integers(0, 32, (B, 9)).astype(np.int32)
      batches.append({"x": t[:, :-1], "y": t[:, 1:], "weights": np.ones((B, 8), np.float32)})
    return model, tasks.LanguageModel(vocab_size=32), batches, 32
  model = {"name": "vit", "image_size": 8, "patch_size": 4, "embed_dim": 32, "num_layers": 1, "num_heads": 4,
           "mlp_dim": 64}
  batches = [{"x": rng.normal(size=(B, 8, 8, 3)).astype(np.float32), "y": rng.integers(0, 8, B).astype(np.int32)}
             for _ in range(3)]
  return model, tasks.Classification(num_classes=8), batches, 8


def _build(model_cfg: dict, optimizer: str, mesh: tuple[int, int, int], num_outputs: int, mode: str = "jit",
           eps: float = 1e-8):
  import ml_collections

  from model_lib import optim
  from model_lib.config import base_config
  from model_lib.models import build_model

  c = base_config()
  c.model = ml_collections.ConfigDict(model_cfg)
  c.optimizer.name = optimizer
  c.optimizer.learning_rate = 0.1 if optimizer == "sgd" else 0.01
  c.optimizer.eps = eps
  c.mesh.data, c.mesh.fsdp, c.mesh.tensor = mesh
  c.parallel.mode = mode
  c.data.batch_size = B
  model = build_model(c.model, num_outputs=num_outputs, vocab_size=num_outputs,
                      batch_norm_axis_name="batch" if mode == "pmap" else None)
  tx, _ = optim.build_optimizer(c.optimizer, 100)
  return c, model, tx


def _train(config, model, tx, task, batches, devices, host_state=None):
  """3 steps on a mesh over `devices`; the state is `host_state` placed in the mesh's shardings (or born there)."""
  import jax

  from model_lib import parallel
  from model_lib.train.step import make_train_step

  mesh = parallel.make_mesh(config, devices)
  rules = parallel.resolve_rules(config.mesh.rules, dict(mesh.shape))
  if host_state is None:
    state, shardings = parallel.init_sharded_state(model, tx, batches[0]["x"], jax.random.key(0), mesh, rules)
  else:
    shardings = parallel.state_shardings(model, tx, batches[0]["x"], mesh, rules)
    state = jax.device_put(host_state.replace(apply_fn=model.apply, tx=tx), shardings)
  runtime = parallel.make_runtime(config, mesh, shardings, rules)
  step = runtime.jit_train_step(make_train_step(task, axis_name=runtime.axis_name))
  state = runtime.from_global(state)
  losses = []
  for batch in batches:
    state, metrics = step(state, runtime.put_batch(batch), jax.random.key(1))
    losses.append(metrics["loss"])
  compiles = step._cache_size() if hasattr(step, "_cache_size") else 1
  return [float(jax.device_get(x).reshape(-1)[0]) for x in losses], runtime.to_global(state), compiles


def _max_diff(a, b) -> float:
  import jax
  import numpy as np

  return max([0.0] + [float(np.abs(np.asarray(x) - np.asarray(y)).max())
                      for x, y in zip(jax.tree.leaves(jax.device_get(a)), jax.tree.leaves(jax.device_get(b)))])


def _check_equivalence() -> list[dict]:
  import jax

  out = []
  for name, optimizer in (("gpt", "sgd"), ("gpt", "adam"), ("vit", "sgd"), ("vit", "adam"), ("gpt_scan", "adam")):
    model_cfg, task, batches, n_out = _gpt_vit_setup(name)
    config, model, tx = _build(model_cfg, optimizer, (1, 1, 1), n_out)
    host = jax.device_get(_initial_state(model, tx, batches))
    ref_losses, ref_state, _ = _train(config, model, tx, task, batches, jax.devices()[:1], host)
    for mesh in ((8, 1, 1), (1, 8, 1), (4, 1, 2), (1, 2, 4)):
      config, model, tx = _build(model_cfg, optimizer, mesh, n_out)
      losses, state, compiles = _train(config, model, tx, task, batches, jax.devices(), host)
      out.append({"model": name, "optimizer": optimizer, "mesh": mesh, "compiles": compiles,
                  "loss_diff": max(abs(a - b) for a, b in zip(losses, ref_losses)),
                  "param_diff": _max_diff(state.params, ref_state.params)})
  return out


def _initial_state(model, tx, batches):
  import jax

  from model_lib.train.state import create_train_state

  return create_train_state(model, tx, batches[0]["x"], jax.random.key(0))


def _device_bytes(state, device) -> tuple[int, int, int]:
  """(bytes on `device`, total bytes, non-scalar leaves left replicated) of the params + optimizer state."""
  import jax

  leaves = jax.tree.leaves((state.step, state.params, state.opt_state, state.lr_scale))
  on_device = sum(s.data.nbytes for x in leaves for s in x.addressable_shards if s.device == device)
  replicated = sum(x.ndim > 0 and x.sharding.is_fully_replicated for x in leaves)
  return on_device, sum(x.nbytes for x in leaves), replicated


def _check_sharding() -> dict:
  import jax

  from model_lib import parallel
  from model_lib.checkpoint import Checkpointer

  model_cfg, task, batches, n_out = _gpt_vit_setup("gpt")
  out = {}
  config, model, tx = _build(model_cfg, "adam", (1, 1, 1), n_out)
  ref = jax.device_get(_initial_state(model, tx, batches))
  states = {}
  for kind, mesh in (("dp", (8, 1, 1)), ("fsdp", (1, 8, 1))):
    config, model, tx = _build(model_cfg, "adam", mesh, n_out)
    states[kind], _ = parallel.init_sharded_state(model, tx, batches[0]["x"], jax.random.key(0),
                                                  parallel.make_mesh(config), kind)
    dev, total, replicated = _device_bytes(states[kind], jax.devices()[3])
    out[kind] = {"device_bytes": dev, "total_bytes": total, "replicated_arrays": replicated}
  out["init_equal"] = _max_diff(states["fsdp"], ref) == 0.0

  # Save under 8-way FSDP, restore on 4-way DP and save again, restore that on one device.
  _, trained, _ = _train(config, model, tx, task, batches, jax.devices(), jax.device_get(states["fsdp"]))
  with tempfile.TemporaryDirectory() as tmp:
    Checkpointer(tmp, "fsdp8", async_save=False).save(3, trained)
    for kind, source, mesh, devices in (("dp4", "fsdp8", (4, 1, 1), jax.devices()[:4]),
                                        ("1dev", "dp4", (1, 1, 1), jax.devices()[:1])):
      config, model, tx = _build(model_cfg, "adam", mesh, n_out)
      target = parallel.abstract_state(model, tx, batches[0]["x"], parallel.make_mesh(config, devices), "dp")
      _, restored, _, _ = Checkpointer(tmp, source, read_only=True).restore(target)
      out[f"restore_{kind}_equal"] = _max_diff(restored, trained) == 0.0
      out[f"restore_{kind}_devices"] = len(restored.params["token_embed"]["embedding"].sharding.device_set)
      Checkpointer(tmp, kind, async_save=False).save(3, restored)
  return out


def _check_pmap() -> dict:
  import jax
  import numpy as np

  from model_lib.train import tasks

  rng = np.random.default_rng(0)
  batches = [{"x": rng.normal(size=(B, 6)).astype(np.float32) * 2 + 1, "y": rng.integers(0, 3, B).astype(np.int32)}
             for _ in range(3)]
  model_cfg = {"name": "mlp", "hidden_sizes": (16,), "batch_norm": True, "batch_norm_momentum": 0.9}
  task = tasks.Classification(num_classes=3)
  out = {}
  for optimizer in ("sgd", "adam"):
    # The Dense bias before BatchNorm has a zero gradient up to rounding; a larger eps keeps Adam from scaling that
    # rounding noise to full-size steps (it would, identically, between any two summation orders).
    config, model, tx = _build(model_cfg, optimizer, (1, 1, 1), 3, eps=1e-3)
    ref_losses, ref, _ = _train(config, model, tx, task, batches, jax.devices()[:1])
    out[optimizer] = {}
    for kind, mode in (("pmap", "pmap"), ("jit8", "jit")):
      config, model, tx = _build(model_cfg, optimizer, (8, 1, 1), 3, mode, eps=1e-3)
      losses, state, _ = _train(config, model, tx, task, batches, jax.devices())
      out[optimizer][kind] = {"loss": max(abs(a - b) for a, b in zip(losses, ref_losses)),
                              "params": _max_diff(state.params, ref.params),
                              "batch_stats": _max_diff(state.batch_stats, ref.batch_stats)}
  return out


if __name__ == "__main__":
  checks = {"equivalence": _check_equivalence, "sharding": _check_sharding, "pmap": _check_pmap}
  print(json.dumps(checks[sys.argv[1]]()))
