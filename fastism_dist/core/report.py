"""What FastISM accelerates in a model, and the FLOP bound its speedup is held against.

Multiply-adds (MACs) are counted by each layer's rule (Conv1D, Dense and MultiHeadAttention
do matrix work); everything else is treated as free. Naive cost is one full forward pass per
mutant, without the taps of a padded convolution that fall in its padding (a convolution of the
whole tensor skips them; they add up in dilated stacks); fast cost is what the mutation pass
computes per mutation under the plan, where windows near the ends do compute such taps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastism_dist.core import rules
from fastism_dist.core.fast import FastISM
from fastism_dist.core.plan import FULL, REF, WIN


@dataclass
class LayerRow:
    """One graph node: ``width`` is the recomputed window ('-' untouched, 'all' recomputed)."""

    name: str
    class_name: str
    role: str
    width: str
    naive_macs: int
    fast_macs: int
    note: str = ""


@dataclass
class PlanReport:
    model_name: str
    seq_length: int
    n_positions: int
    layers: list = field(default_factory=list)
    stops: list = field(default_factory=list)   # (layer name, reason) where acceleration stops

    @property
    def naive_flops(self):
        """Multiply-adds of one naive forward pass (per mutation)."""
        return sum(row.naive_macs for row in self.layers)

    @property
    def fast_flops(self):
        """Multiply-adds of the fast path per mutation."""
        return sum(row.fast_macs for row in self.layers)

    @property
    def bound(self):
        """Theoretical speedup naive / fast from the FLOP counts."""
        return self.naive_flops / max(self.fast_flops, 1)

    def to_dict(self):
        return {"model": self.model_name, "seq_length": self.seq_length,
                "positions": self.n_positions, "naive_macs": self.naive_flops,
                "fast_macs": self.fast_flops, "bound": self.bound,
                "stops": [list(s) for s in self.stops],
                "layers": [row.__dict__ for row in self.layers]}


def plan_report(model, start=0, end=None, substitutions=None, seq_input=0, safe_mode=True,
                **fast_options):
    """Plan ``model`` (a keras.Model, a path, or a built ``FastISM``) and count its MACs."""
    ism = model if isinstance(model, FastISM) else FastISM(
        model, start=start, end=end, substitutions=substitutions, seq_input=seq_input,
        check=False, safe_mode=safe_mode, **fast_options)
    program, plan, graph = ism.program, ism.plan, ism.graph
    report = PlanReport(ism.model.name, ism.seq.length, ism.spec.n_positions)
    for node_plan in plan.nodes:
        node = node_plan.node
        every_tap = naive_macs(node, graph)
        naive = int(round(every_tap * _inside_fraction(node_plan.rule, node, graph)))
        fast, note = _fast_macs(node_plan, program, graph, naive, every_tap)
        if not note and node_plan.state == FULL:
            at_frontier = any(plan.tensors[t].state == WIN for t in node.arg_ids)
            note = node_plan.rule.reason if at_frontier else "after the stop: recomputed in full"
        report.layers.append(LayerRow(node.name, node_plan.class_name, node_plan.rule.role,
                                      _width(plan, node), naive, fast, note))
    for node_plan in plan.stop_nodes():
        if node_plan.node.index not in program.dense:
            reason = node_plan.rule.reason or "its input is recomputed in full"
            report.stops.append((node_plan.node.name, reason))
    return report


def _width(plan, node):
    tensor = plan.tensors[node.out_ids[0]]
    if tensor.state == WIN:
        return str(tensor.width)
    return "-" if tensor.state == REF else "all"


def _inside_fraction(rule, node, graph):
    """The share of a whole-tensor convolution's taps that read the input, not its padding."""
    if not isinstance(rule, rules.Window):
        return 1.0
    return rule.inside_fraction(graph.shapes[node.arg_ids[0]][0], graph.shapes[node.out_ids[0]][0])


def _fast_macs(node_plan, program, graph, naive, every_tap):
    """MACs per mutation of one node and its note: ``naive`` counts the taps of the whole
    layer that read the input, ``every_tap`` all of them (what a padded window computes)."""
    node = node_plan.node
    if node_plan.state == REF or node.index in program.elided:
        return 0, ""
    if node.index in program.incremental:
        kernel, channels, filters = node.op.kernel.shape
        source = node.arg_ids[0]
        width = program.plan.tensors[source].width
        note = "first-layer lookup" if source == program.plan.seq_id else "incremental convolution"
        return int(width * kernel * channels * filters), note
    if node.index in program.dense:
        tid, _ = program.dense[node.index]
        window = program.plan.tensors[tid].width * graph.shapes[tid][1]
        return int(window * node.op.kernel.shape[1]), "incremental dense"
    if node_plan.state == FULL:
        return naive, ""
    if node.index in program.whole:
        return naive, "all changed: the layer itself"
    out = program.plan.tensors[node.out_ids[0]]
    note = "shifted products" if getattr(node_plan.rule, "shifted_products", False) else ""
    return int(round(every_tap * out.width / out.length)), note


def naive_macs(node, graph):
    """Multiply-adds of one call of ``node`` on one sequence."""
    return rules.naive_macs(node, [graph.shapes[t] for t in node.arg_ids],
                            [graph.shapes[t] for t in node.out_ids])


def format_report(report):
    """The report as a text table with totals, the bound and where acceleration stops."""
    header = ("layer", "class", "role", "window", "naive MACs", "fast MACs", "note")
    rows = [(r.name, r.class_name, r.role, r.width, f"{r.naive_macs:,}", f"{r.fast_macs:,}", r.note)
            for r in report.layers]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = [f"model {report.model_name!r}: sequence length {report.seq_length}, "
             f"{report.n_positions} mutated positions"]
    fmt = "  ".join(f"{{:<{w}}}" if i < 4 or i == 6 else f"{{:>{w}}}" for i, w in enumerate(widths))
    lines.append(fmt.format(*header).rstrip())
    lines.extend(fmt.format(*row).rstrip() for row in rows)
    lines.append(f"naive: {report.naive_flops / 1e6:,.2f} M multiply-adds per mutation; "
                 f"fast: {report.fast_flops / 1e6:,.2f} M; theoretical speedup {report.bound:.1f}x")
    if report.stops:
        lines.extend(f"acceleration stops at {name}: {reason}" for name, reason in report.stops)
    else:
        lines.append("no stop layer: the whole model is computed on windows")
    return "\n".join(lines)
