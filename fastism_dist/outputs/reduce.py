"""Transitional: the old module path of the output names, until every caller imports them
from ``fastism_dist.outputs``. Delete this file then."""

from fastism_dist.outputs import *  # noqa: F401,F403
