"""cdcsync: hospital-side front end (前置软件) of the national infectious-disease surveillance system."""

__version__ = "0.1.0"
