"""Benchmarks, run by hand (pytest collects none of them): `python -m tests.benchmarks.speed`.

They run as scripts whose output is read: no download progress bars in it, and no analytics from the
gradio that the start-up probe imports. Set here, before any of them imports transformers or gradio.
"""
import os

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
