"""Pipeline Lab core: design, build, export and profile `tf.data` pipelines.

This package never imports Streamlit, and importing it has no side effects:
TensorFlow is imported on first use, through `pipeline_core._tf.tf()`, which
quiets TensorFlow's C++ logging first.
"""

__version__ = "0.1.0"
