"""The purification service: FastAPI + uvicorn, micro-batching, metrics and a web page.

Needs the optional ``serve`` extra (``pip install "srdefense[serve]"``)::

    from srdefense.serve import ServeConfig, create_app
    app = create_app(ServeConfig(defense="paper"))   # run with uvicorn

or from the shell: ``srdefense serve``.
"""

from typing import TYPE_CHECKING

from .config import ServeConfig, is_loopback

if TYPE_CHECKING:  # the type checker sees create_app's signature; at run time it is lazy
    from .app import create_app

__all__ = ["ServeConfig", "create_app", "is_loopback"]


def __getattr__(name: str) -> object:
    # FastAPI is imported only when the app is asked for, so the config works without the extra.
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
