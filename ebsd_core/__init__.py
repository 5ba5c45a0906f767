"""ebsd_core: few-shot deep learning for EBSD pattern classification (the engine).

Layers, bottom to top: ``io``, ``phases``, ``masters``, ``simulate`` ->
``preprocess``, ``datasets`` -> models and training -> explanation. The engine
never imports streamlit; the dashboard in ``pages/`` calls into it.
"""

__version__ = "0.1.0"
