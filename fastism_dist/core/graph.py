"""Read a Keras 3 model into a plain layer graph.

The graph is a topologically ordered list of ``Node`` s, each one call of one Keras operation, with
integer tensor ids on its edges. Nested Functional / Sequential models are inlined (their layers
become nodes of the outer graph), and a layer applied twice is two nodes sharing one layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastism_dist.errors import ModelError


@dataclass
class Node:
    """One call of a Keras operation.

    ``arguments`` is Keras' own record of the call (positional / keyword arguments with symbolic
    tensors); ``arg_ids`` are our tensor ids for ``arguments.keras_tensors`` in order, so the call
    can be replayed on real tensors with ``Graph.call``.
    """

    index: int
    op: object
    arguments: object
    arg_ids: tuple
    out_ids: tuple
    name: str

    @property
    def class_name(self):
        return type(self.op).__name__


@dataclass
class Graph:
    """A model as plain nodes and integer tensor ids.

    shapes : dict mapping tensor id to its static shape without the batch axis
    """

    nodes: list = field(default_factory=list)
    input_ids: list = field(default_factory=list)
    output_ids: list = field(default_factory=list)
    shapes: dict = field(default_factory=dict)

    def producer(self):
        """Map tensor id -> the node that produces it (inputs are absent)."""
        return {tid: node for node in self.nodes for tid in node.out_ids}

    def consumers(self):
        """Map tensor id -> list of nodes that read it."""
        result = {}
        for node in self.nodes:
            for tid in set(node.arg_ids):
                result.setdefault(tid, []).append(node)
        return result

    def call(self, node, values):
        """Run ``node`` on real tensors; ``values`` maps every id in ``node.arg_ids`` to a tensor.

        Returns the list of output tensors, in ``node.out_ids`` order.
        """
        from keras import tree

        tensor_dict = {id(kt): values[tid] for kt, tid in zip(node.arguments.keras_tensors, node.arg_ids)}
        args, kwargs = node.arguments.fill_in(tensor_dict)
        if "training" in getattr(node.op, "_call_context_args", ()):
            kwargs = dict(kwargs, training=False)
        return tree.flatten(node.op(*args, **kwargs))

    def run(self, inputs, keep=None):
        """Run the whole graph on ``inputs`` (one tensor per model input).

        Returns a dict tensor id -> value for the ids in ``keep`` (default: the outputs).
        """
        keep = set(self.output_ids if keep is None else keep)
        last_use = self.last_use()
        values = dict(zip(self.input_ids, inputs))
        for node in self.nodes:
            for tid, value in zip(node.out_ids, self.call(node, values)):
                values[tid] = value
            for tid in set(node.arg_ids):
                if last_use.get(tid) == node.index and tid not in keep:
                    values.pop(tid, None)
        return {tid: values[tid] for tid in keep}

    def last_use(self):
        """Map tensor id -> index of the last node that reads it."""
        last = {}
        for node in self.nodes:
            for tid in node.arg_ids:
                last[tid] = node.index
        return last


def _inner_functional(op):
    """The Functional graph of a nested model that can be inlined, else None."""
    import keras
    from keras.src.models.functional import Functional
    from keras.src.models.sequential import Sequential

    if isinstance(op, Sequential):
        return op._functional
    if isinstance(op, Functional) and type(op).call is Functional.call:
        return op
    if isinstance(op, keras.Model):
        return None
    return None


def _topological_nodes(functional):
    """Keras nodes of a Functional in execution order (deepest first), input nodes excluded."""
    order = []
    for depth in sorted(functional._nodes_by_depth, reverse=True):
        for node in functional._nodes_by_depth[depth]:
            if node.operation is not None and not node.is_input:
                order.append(node)
    return order


class _Reader:
    def __init__(self):
        self.graph = Graph()
        self._next_id = 0

    def new_tensor(self, keras_tensor):
        tid = self._next_id
        self._next_id += 1
        self.graph.shapes[tid] = tuple(keras_tensor.shape[1:])
        return tid

    def inline(self, functional, scope, prefix):
        """Append the nodes of ``functional``; ``scope`` maps id(KerasTensor) -> tensor id."""
        for knode in _topological_nodes(functional):
            arg_tensors = knode.arguments.keras_tensors
            if any(id(kt) not in scope for kt in arg_tensors):
                continue
            arg_ids = tuple(scope[id(kt)] for kt in arg_tensors)
            inner = _inner_functional(knode.operation)
            if inner is not None and len(inner.inputs) == len(arg_tensors):
                inner_scope = {id(kt): tid for kt, tid in zip(inner.inputs, arg_ids)}
                self.inline(inner, inner_scope, f"{prefix}{knode.operation.name}/")
                for outer_kt, inner_kt in zip(knode.outputs, inner.outputs):
                    scope[id(outer_kt)] = inner_scope[id(inner_kt)]
                continue
            out_ids = tuple(self.new_tensor(kt) for kt in knode.outputs)
            for kt, tid in zip(knode.outputs, out_ids):
                scope[id(kt)] = tid
            self.graph.nodes.append(Node(len(self.graph.nodes), knode.operation, knode.arguments,
                                         arg_ids, out_ids, prefix + knode.operation.name))


def shape_floats(shape):
    """Values of one sequence's tensor of ``shape`` (no batch axis; unknown sizes count 1)."""
    size = 1
    for dim in shape:
        size *= dim or 1
    return int(size)


def read_graph(model):
    """Read a built Keras 3 Functional or Sequential model into a ``Graph``."""
    functional = _inner_functional(model)
    if functional is None:
        raise ModelError(
            f"model {getattr(model, 'name', model)!r} is not a built Functional or Sequential "
            "Keras model (subclassed models have no graph to read; build it with keras.Input)"
        )
    reader = _Reader()
    scope = {}
    for kt in functional.inputs:
        tid = reader.new_tensor(kt)
        scope[id(kt)] = tid
        reader.graph.input_ids.append(tid)
    reader.inline(functional, scope, "")
    missing = [kt.name for kt in functional.outputs if id(kt) not in scope]
    if missing:
        raise ModelError(f"model outputs {missing} cannot be reached from its inputs")
    reader.graph.output_ids = [scope[id(kt)] for kt in functional.outputs]
    return reader.graph
