"""Jupyter widgets for vurn: anywidget, ipywidgets and Bokeh components bound to a
``lab`` session or trace.

UI only: selection and display live here, model maths lives in ``lab``.

    >>> from widgets import TextColourer     # the text colourer (paper Figure 2)
    >>> from widgets import NeuronPage       # one unit on a page: histogram, examples, scores
    >>> from widgets import GateSaturation   # gate saturation, Figure 3, linked to a colourer
    >>> from widgets import ErrorExplorer    # the error taxonomy, clickable (paper §4.4)
    >>> from widgets import character_bars   # LSTM against n-gram per character (paper §4.3)
    >>> from widgets import ModelMap         # the t-SNE of Table 1's models; a tap opens one (§4.1)
"""
from widgets.colourer import TextColourer, side_by_side
from widgets.errors import ErrorExplorer
from widgets.gates import GateSaturation
from widgets.longrange import CompareBars, brace_bars, character_bars
from widgets.models import ModelMap
from widgets.neuron import NeuronPage

__all__ = ["CompareBars", "ErrorExplorer", "GateSaturation", "ModelMap", "NeuronPage", "TextColourer", "brace_bars",
           "character_bars", "side_by_side"]
