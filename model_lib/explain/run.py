"""Explain a trained run: attributions for one example (images) or feature importance (tabular), as PNG + JSON."""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.metrics import accuracy_score, r2_score

from model_lib.explain import attribution, importance

IMAGE_METHODS = ("saliency", "smoothgrad", "integrated_gradients", "occlusion")
TABULAR_METHODS = ("permutation", "shap")


def _figure(n: int):
  from matplotlib.figure import Figure

  fig = Figure(figsize=(4 * n, 4), dpi=100)
  return fig, [fig.add_subplot(1, n, i + 1) for i in range(n)]


def _image_attribution(method: str, f: Any, x: jax.Array, seed: int) -> jax.Array:
  if method == "saliency":
    return attribution.saliency(f, x)
  if method == "smoothgrad":
    return attribution.smoothgrad(f, x, jax.random.key(seed))
  if method == "integrated_gradients":
    return attribution.integrated_gradients(f, x, num_steps=64)
  return attribution.occlusion(f, x, patch=max(2, x.shape[1] // 7))


def explain_run(workdir: str, method: str, index: int = 0, split: str = "test", seed: int = 0) -> dict[str, Any]:
  """Writes `explain_<method>_<index>.png` and `.json` in `workdir`; returns the JSON content."""
  from model_lib.train.evaluation_run import restore_for_eval  # Local: heavy imports.

  if method not in IMAGE_METHODS + TABULAR_METHODS:
    raise ValueError(f"Unknown --method '{method}'; choose one of {list(IMAGE_METHODS + TABULAR_METHODS)}.")
  exp, state, step, _ = restore_for_eval(workdir)
  variables = {"params": state.params, **({"batch_stats": state.batch_stats} if state.batch_stats else {})}
  apply = jax.jit(lambda x: exp.model.apply(variables, x, train=False))
  data = exp.dataset.split(split)
  x_all, y_all = np.asarray(data["x"]), np.asarray(data["y"])
  if not 0 <= index < len(x_all):
    raise ValueError(f"--index {index} is outside the {split} split (0..{len(x_all) - 1}).")
  stem = os.path.join(workdir, f"explain_{method}_{index}")
  result: dict[str, Any] = {"method": method, "split": split, "index": index, "checkpoint_step": step}
  if method in IMAGE_METHODS:
    if x_all.ndim < 3:
      raise ValueError(f"--method={method} needs image inputs; use permutation or shap for tabular data.")
    x = jnp.asarray(x_all[index:index + 1])
    logits = np.asarray(apply(x))[0]
    target = int(np.argmax(logits)) if logits.size > 1 else 0
    attr = np.asarray(_image_attribution(method, attribution.class_score_fn(apply, target), x, seed))[0]
    heat = np.abs(attr).sum(-1) if attr.ndim == 3 and method != "occlusion" else np.abs(attr)
    if method == "occlusion":
      heat = attr
    fig, (a0, a1) = _figure(2)
    img = x_all[index]
    a0.imshow(img if img.ndim == 3 and img.shape[-1] == 3 else img.squeeze(), cmap=None if img.ndim == 3 else "gray")
    a0.set_title(f"input (label {int(y_all[index])}, predicted {target})")
    im = a1.imshow(heat, cmap="inferno")
    a1.set_title(method)
    fig.colorbar(im, ax=a1)
    result.update(label=int(y_all[index]), predicted=target, attribution_sum=float(attr.sum()),
                  heatmap=np.asarray(heat).round(6).tolist())
    if method == "integrated_gradients":
      f = attribution.class_score_fn(apply, target)
      result["completeness_gap"] = float(attr.sum() - (f(x) - f(jnp.zeros_like(x)))[0])
  else:
    if x_all.ndim != 2:
      raise ValueError(f"--method={method} is for tabular data (N, D); use an image method for images.")
    task = exp.dataset.info.task
    predict = (lambda v: np.asarray(apply(jnp.asarray(v, jnp.float32))).reshape(len(v), -1))
    if task == "regression":
      pred, score = (lambda v: predict(v)[:, 0]), r2_score
    elif task == "binary":
      pred, score = (lambda v: predict(v)[:, 0]), (lambda y, s: accuracy_score(y, s > 0))
    else:
      pred, score = (lambda v: predict(v).argmax(-1)), accuracy_score
    names = [f"x{j}" for j in range(x_all.shape[1])]
    if method == "permutation":
      out = importance.permutation_importance(pred, x_all, y_all, score, num_repeats=5, seed=seed)
      values, err = out["mean"], out["std"]
      result.update(baseline_score=float(out["baseline_score"]), importance=values.tolist(), std=err.tolist())
    else:
      background = np.asarray(exp.dataset.split("train")["x"])[:100]
      values = importance.shap_values(pred if task != "classification" else (lambda v: predict(v).max(-1)),
                                      background, x_all[index:index + 1], seed=seed)[0]
      err = None
      result.update(shap_values=values.tolist(), prediction=float(np.asarray(pred(x_all[index:index + 1]))[0]))
    fig, (ax,) = _figure(1)
    order = np.argsort(np.abs(values))
    ax.barh([names[j] for j in order], values[order], xerr=None if err is None else err[order])
    ax.set_title(f"{method} ({split}{'' if method == 'permutation' else f' #{index}'})")
    result["features"] = names
  fig.tight_layout()
  fig.savefig(stem + ".png")
  with open(stem + ".json", "w") as fh:
    json.dump(result, fh)
  return {k: v for k, v in result.items() if k != "heatmap"}
