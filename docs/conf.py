"""Sphinx configuration of sb3-gaara's documentation (``make docs``).

The pages are Markdown read by MyST (docs/misc/contributing_docs.md says why); the parameters of every class come
from its docstring through autodoc, so the reference cannot drift from the code.
"""

import os
import sys

# The checkout's package, whether or not it is installed: the documentation describes this working tree.
DOCS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(DOCS)
sys.path.insert(0, ROOT)
# Importing sb3_gaara registers the dmc-* ids but loads no MuJoCo; a headless default in case a docstring example does.
os.environ.setdefault("MUJOCO_GL", "egl")

with open(os.path.join(ROOT, "sb3_gaara", "version.txt")) as file_handler:
    release = file_handler.read().strip()
version = release

project = "sb3-gaara"
author = "sb3-gaara developers"
copyright = "sb3-gaara developers, MIT license"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
# docs/results/ and docs/benchmarks/ are data the study and the benchmark write; the pages link to them.
exclude_patterns = ["_build", "results/**", "benchmarks/**", "Thumbs.db", ".DS_Store"]

# MyST: ```{directive} blocks, $math$, anchors for the headings down to ### so that pages link to sections.
myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
myst_heading_anchors = 3

# autodoc: the class docstring and the constructor's parameters (SB3's reST :param: fields), members in source order.
autoclass_content = "class"
autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": True}
# Inherited docstrings would pull gymnasium's and torch's own reST, which is not ours to fix.
autodoc_inherit_docstrings = False
autodoc_typehints = "signature"
autosummary_generate = False

html_theme = "sphinx_rtd_theme"
html_title = f"sb3-gaara {release}"
html_theme_options = {"navigation_depth": 2}
# The classes and functions stay out of the sidebar, which would otherwise list every member of the API on every page.
toc_object_entries = False
html_static_path: list[str] = []
