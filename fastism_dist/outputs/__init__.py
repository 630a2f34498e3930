"""What is stored of each model output: task choice and reducers, applied on the workers.

Other packages import these names from ``fastism_dist.outputs``; the modules inside may move.
"""

from fastism_dist.outputs.arrays import (bin_sums, jsd, logsumexp, map_mutants, select_tasks,
                                         softmax, task_indices, total_count)
from fastism_dist.outputs.plan import OutputPlan, parse_tasks, plan_outputs
from fastism_dist.outputs.reducers import REDUCERS, Dim, Reduced, Reducer, get_reducer, parse_reduce

__all__ = [
    "Dim",
    "Reduced",
    "Reducer",
    "REDUCERS",
    "total_count",
    "logsumexp",
    "softmax",
    "jsd",
    "bin_sums",
    "task_indices",
    "select_tasks",
    "map_mutants",
    "get_reducer",
    "parse_reduce",
    "parse_tasks",
    "OutputPlan",
    "plan_outputs",
]
