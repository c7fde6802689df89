"""The maintainer side of tufoci: create, change, sign and publish trust repositories.

Imported as ``tufoci.repo_tool``. It may use ``tufoci.client`` (a maintainer
refreshes the current state through the same verified workflow as consumers);
the client never imports this package.
"""
