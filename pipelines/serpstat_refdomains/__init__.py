"""serpstat-refdomains: dated snapshots of Serpstat referring domains, loaded with dlt."""

__version__ = "0.1.0"
