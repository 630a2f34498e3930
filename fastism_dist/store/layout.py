"""Transitional: the old module path of the store's names, until every caller imports them
from ``fastism_dist.store``. Delete this file then."""

from fastism_dist.store import *  # noqa: F401,F403
from fastism_dist.store import open_group as _open_group  # noqa: F401
from fastism_dist.store import store_path as _fspath  # noqa: F401
