"""What loading the plugin changes in fairseq and torch besides registering, one module each;
``plugin.py`` applies them, each unless its environment switch (``switches.py``) is set."""
