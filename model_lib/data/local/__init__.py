"""Datasets read from files under `<data_dir>`; one module per format. Importing registers every dataset.

Adding a format: a module here whose loader is decorated with `@register_local(name, path)`, plus
its import below.
"""

from model_lib.data import mnist
from model_lib.data.local import cifar, shakespeare, sst, uci  # noqa: F401  (registration side effect)
from model_lib.data.local.common import LOCAL, has_local_files, register_local

# mnist.py registers its own loader with DATASETS; recording it here lets `source=auto` see its files.
LOCAL["mnist"] = (mnist.load_mnist, "mnist")

__all__ = ["LOCAL", "has_local_files", "register_local"]
