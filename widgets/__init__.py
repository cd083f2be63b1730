"""Jupyter widgets for vurn: anywidget, ipywidgets and Bokeh components bound to a
``lab`` session or trace.

UI only: selection and display live here, model maths lives in ``lab``.
(Placeholder package; the components arrive with the notebooks.)
"""
