"""optin-pages: signup pages for ProTexting SMS keyword campaigns."""

from importlib.resources import files
from pathlib import Path


def packaged(name: str) -> Path:
    """A folder this package carries: "templates", "static" or "migrations".

    Found through the package, so an installed wheel works from any directory and a
    checkout works the same (app/templates and app/static link to the top-level folders;
    pyproject.toml). Jinja2, StaticFiles and Alembic read real directories: the package
    runs unzipped, as pip installs a wheel.
    """
    return Path(str(files(__name__) / name))
