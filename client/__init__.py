"""The consumer side of tufoci: trust pins, verified refresh, tag → digest.

Imported as ``tufoci.client``. It carries no signing code and never imports
``tufoci.repo_tool``.
"""
