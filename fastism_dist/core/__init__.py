"""The ISM algorithm on one process: graph reader, layer rules, plan, executors, self-check.

Importing it is cheap: TensorFlow is imported by the functions that run a model.
"""

from fastism_dist.core.averaged import AveragedISM
from fastism_dist.core.check import TOLERANCES, Tolerance, self_check
from fastism_dist.core.executor import ISMExecutor, ISMResult, ResultSink, padded_size
from fastism_dist.core.fast import FastISM
from fastism_dist.core.graph import Graph, Node, read_graph
from fastism_dist.core.model import (SequenceInput, find_sequence_input, load_model, output_names,
                                     with_compute_dtype)
from fastism_dist.core.mutations import (MutationSpec, make_mutation_spec, validate_other_inputs,
                                         validate_sequences)
from fastism_dist.core.naive import NaiveISM
from fastism_dist.core.plan import Plan, make_plan
from fastism_dist.core.report import format_report, plan_report
from fastism_dist.core.rules import (LOCAL, MERGE, POSITION_WISE, STOP, Merge, PositionWise, Rule,
                                     Stop, Window, register_rule)
from fastism_dist.core.views import (View, check_views, make_views, output_resolutions,
                                     parse_shifts, strand_ranges)

__all__ = [
    "FastISM", "NaiveISM", "AveragedISM", "ISMExecutor", "ISMResult", "ResultSink", "padded_size",
    "Graph", "Node", "read_graph", "Plan", "make_plan",
    "Rule", "PositionWise", "Window", "Merge", "Stop", "register_rule",
    "POSITION_WISE", "LOCAL", "MERGE", "STOP",
    "SequenceInput", "find_sequence_input", "load_model", "output_names", "with_compute_dtype",
    "MutationSpec", "make_mutation_spec", "validate_sequences", "validate_other_inputs",
    "View", "make_views", "check_views", "output_resolutions", "parse_shifts",
    "strand_ranges",
    "TOLERANCES", "Tolerance", "self_check", "plan_report", "format_report",
]
