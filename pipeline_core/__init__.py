"""Pipeline Lab core: design, build, export and profile `tf.data` pipelines.

This package never imports Streamlit. TensorFlow is imported lazily, with its
C++ logging quieted first.
"""

from pipeline_core._tf import quiet_tensorflow_logs

quiet_tensorflow_logs()

__version__ = "0.1.0"
