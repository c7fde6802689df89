"""tufoci: TUF trust repositories stored as OCI artifacts beside the images they protect."""

__version__ = "0.1.0"
