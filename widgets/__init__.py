"""Jupyter widgets for vurn: anywidget, ipywidgets and Bokeh components bound to a
``lab`` session or trace.

UI only: selection and display live here, model maths lives in ``lab``.

    >>> from widgets import TextColourer     # the text colourer (paper Figure 2)
"""
from widgets.colourer import TextColourer

__all__ = ["TextColourer"]
