"""Scale-out: device mesh, logical-axis rules, shardings, jit/pmap runtimes and multi-host start-up.

Anything that touches devices and shardings goes through here; the same config runs on 1 CPU device,
8 GPUs or a TPU pod slice, and only `config.mesh` changes.
"""

from model_lib.parallel.mesh import AXES, BATCH_AXES, batch_shards, make_mesh, mesh_shape
from model_lib.parallel.pmap import PmapRuntime
from model_lib.parallel.rules import RULE_SETS, logical_axis_rules, param_spec, resolve_rules
from model_lib.parallel.runtime import make_runtime, setup, setup_compilation_cache
from model_lib.parallel.sharding import (JitRuntime, abstract_state, abstract_variables, annotated_params,
                                         batch_sharding, init_sharded_state, put_global_batch, replicated,
                                         shard_batch, state_shardings, under_mesh, use_mesh)

__all__ = ["AXES", "BATCH_AXES", "JitRuntime", "PmapRuntime", "RULE_SETS", "abstract_state", "abstract_variables",
           "annotated_params", "batch_sharding", "batch_shards", "init_sharded_state", "logical_axis_rules",
           "make_mesh", "make_runtime", "mesh_shape", "param_spec", "put_global_batch", "replicated", "resolve_rules",
           "setup", "setup_compilation_cache", "shard_batch", "state_shardings", "under_mesh", "use_mesh"]
