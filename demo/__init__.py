"""Video search with CLIP4Clip and X-CLIP: library, command line and Gradio app."""

__version__ = "0.1.0"
