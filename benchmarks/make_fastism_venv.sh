#!/usr/bin/env bash
# Build benchmarks/venv-fastism: the original fastISM (PyPI `fastism` 0.5.1, Nair et al. 2022)
# for the `original` column of benchmarks/table1.py.
#
# fastism 0.5.1 declares `tensorflow>=2.3,<3` and `pydot>=1.4.1,<2`; it uses `tf.keras`
# internals (Keras 2: `layer.inbound_nodes`, `tf.keras.layers.ZeroPadding1D` on tensors), so it
# only runs under tf-keras. We pin TensorFlow and tf-keras to the same version as the main
# environment (2.21) so both columns use the same TensorFlow kernels, and the runner
# (benchmarks/original_fastism.py) sets TF_USE_LEGACY_KERAS=1 before importing TensorFlow,
# which makes `tf.keras` the tf-keras package instead of Keras 3.
#
# Usage:  bash benchmarks/make_fastism_venv.sh [--shap] [PYTHON]   (PYTHON defaults to python3)
# Then:   python -m benchmarks.table1 --original-venv benchmarks/venv-fastism ...
# The folder is git-ignored (/benchmarks/venv-*/). Takes ~1 min (TF wheel ~250 MB).
#
# --shap also builds benchmarks/venv-shap (tensorflow-cpu + Keras 3 + shap 0.51.0) for the
# `deepshap` method of table1.py, which uses it automatically when present. shap pulls in numba,
# pandas and scikit-learn, so it gets its own environment rather than the project's.
set -euo pipefail
cd "$(dirname "$0")"
WITH_SHAP=0
if [ "${1:-}" = "--shap" ]; then WITH_SHAP=1; shift; fi
PYTHON="${1:-python3}"
VENV=venv-fastism
TF_VERSION="${TF_VERSION:-2.21.0}"

"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip
# tensorflow-cpu is enough on a CPU machine; on a GPU machine use TF_PACKAGE=tensorflow[and-cuda].
"$VENV/bin/pip" install -q --disable-pip-version-check \
    "${TF_PACKAGE:-tensorflow-cpu}==$TF_VERSION" "tf-keras==${TF_VERSION%.*}.*" \
    "fastism==0.5.1" "pydot>=1.4.1,<2"
echo "check:"
TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=2 "$VENV/bin/python" - <<'EOF'
import tensorflow as tf, tf_keras, fastism
assert tf.keras.__name__.startswith("tf_keras") or tf.keras is tf_keras or \
    tf.keras.__version__.startswith("2."), "tf.keras is not tf-keras: set TF_USE_LEGACY_KERAS=1"
print(f"  tensorflow {tf.__version__}, tf-keras {tf_keras.__version__}, fastism OK")
EOF
echo "built benchmarks/$VENV (remember: TF_USE_LEGACY_KERAS=1 when using it by hand)"

if [ "$WITH_SHAP" = 1 ]; then
    "$PYTHON" -m venv venv-shap
    venv-shap/bin/pip install -q --disable-pip-version-check \
        "${TF_PACKAGE:-tensorflow-cpu}==$TF_VERSION" "keras>=3.10,<4" "shap==0.51.0"
    TF_CPP_MIN_LOG_LEVEL=2 venv-shap/bin/python -c \
        "import shap, tensorflow as tf; print(f'  shap {shap.__version__}, tensorflow {tf.__version__}')"
    echo "built benchmarks/venv-shap"
fi
