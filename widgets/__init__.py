"""Jupyter widgets for vurn: anywidget, ipywidgets and Bokeh components bound to a
``lab`` session or trace.

UI only: selection and display live here, model maths lives in ``lab``.

    >>> from widgets import TextColourer     # the text colourer (paper Figure 2)
    >>> from widgets import NeuronPage       # one unit on a page: histogram, examples, scores
"""
from widgets.colourer import TextColourer, side_by_side
from widgets.neuron import NeuronPage

__all__ = ["NeuronPage", "TextColourer", "side_by_side"]
