"""The description of one run, built once on the client by ``plan_run`` and sent whole to workers.

``plan_run`` validates every setting, the model, the sequences and any existing store before a
cluster starts; its ``RunPlan`` then goes to every worker inside the run's ``ISMWorkerPlugin``.
``RunPlan.params()`` is the dict stored in the store's attributes and compared on resume.

A run that replaces an existing local store (``overwrite``) writes its new store beside it
(``<out>.fastism-new-<run id>``) and swaps it in only when every chunk is done
(:func:`publish`); until then the old store is untouched. Rerunning it continues that new store.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import uuid
import warnings
from dataclasses import dataclass, field

import numpy as np

from fastism_dist.core import (MutationSpec, find_sequence_input, load_model, make_mutation_spec,
                               output_names, parse_shifts)
from fastism_dist.distributed.checks import (check_ensemble_options, check_out_location,
                                             check_settings, check_views_of_run, check_xla,
                                             chunk_shapes, sharding)
from fastism_dist.distributed.ensemble import (check_ensemble_params, check_options,
                                               model_files, plan_ensemble)
from fastism_dist.distributed.inputs import (InputDescription, check_source, describe,
                                             open_source, store_coords)
from fastism_dist.distributed.model import (client_tensorflow, is_model_file,
                                            model_for_workers, model_sha256, output_shapes,
                                            task_names)
from fastism_dist.distributed.names import check_alt_names, check_dim_names, choose_outputs
from fastism_dist.distributed.other_inputs import plan_other_inputs
from fastism_dist.distributed.settings import MAX_SKIPPED_LISTED, auto_chunk_size
from fastism_dist.distributed.variants import alt_note, count_indels
from fastism_dist.errors import FastISMError, StoreMismatchError
from fastism_dist.io import SequenceWarning
from fastism_dist.outputs import plan_outputs
from fastism_dist.store import (check_params, create_template, done_mask, is_url,
                                normalise_params, read_chunk_size, read_params, replace_store,
                                staged_stores, staging_path, store_path, store_state,
                                stored_run_id)


@dataclass(frozen=True)
class RunPlan:
    """Everything one run needs, validated on the client; cheap to pickle (no arrays of data).

    Attributes
    ----------
    out : str
        The Zarr store (absolute path or URL).
    source : SequenceSource
        Where the sequences are (paths and per-record metadata).
    input : InputDescription
        What identifies the sequences in the parameters.
    model_ref : str or bytes
        What workers load: a model path, or the bytes of a ``.keras`` file.
    model_sha256 : str
    method : {"fast", "naive"}
    spec : MutationSpec
        Mutated positions and substitutions (W positions, S substitutions).
    output_plan : OutputPlan
        Stored outputs, their task choice, reducers and dimensions.
    bases : tuple of str
        Letters of the C channels (``ref_base``, the ``base`` coordinate).
    chunk_size : int
        Sequences per chunk (one task, one Zarr chunk).
    dtype : {"float32", "float16"}
        Stored dtype.
    batch_size : int or None
        Mutations per model call (None: the executor's default).
    safe_mode : bool
        Keras safe mode when loading the model.
    alt : bool
        VCF input: also store each output with the ALT allele.
    state : str
        What was at ``out`` before the run: ``"absent"``, ``"store"``, ``"incomplete"`` or
        ``"zarr"``.
    resume : bool
        Continue the existing store at ``out`` (skip its done chunks).
    attrs : dict
        Extra store attributes (skipped VCF records, the ALT note).
    run_id : str
        Unique per run: names the worker plugin and the tasks.
    target : str
        Where the workers write: ``out``, or for a run replacing a local store the new store
        beside it, swapped in by :func:`publish`. Default is ``out``.
    store_id : str or None
        The run id the store at ``target`` carries (its creator's); its writers write only
        while it does. Default is ``run_id``.
    staged : bool
        ``target`` is the unfinished new store of an earlier run with the same parameters,
        continued rather than created.
    seq_input : int or str
        The model's sequence input (index or name). Default is 0.
    other_inputs : OtherInputs or None
        A multi-input model's other inputs, one row per sequence. Default is None.
    read_chunk : int or None
        Sequences per Zarr chunk inside each task's shard (None: one chunk per task).
    rc : bool
        Average every output with that of the reverse-complemented sequence. Default is False.
    shifts : tuple of int
        Average over the sequence shifted by each of these positions (see
        ``fastism_dist.core.views``). Default is ``(0,)``: no shift.
    ensemble : EnsembleSpec or None
        The models of an ensemble run (``model_ref`` is then the first one's path and
        ``model_sha256`` the ensemble's digest). Default is None: one model.
    xla : bool or "auto"
        Whether the fast path compiles its mutation pass with XLA ("auto": each worker times
        both in its warm-up). Not a stored parameter: either choice gives the same outputs to
        float32 round-off, so a resumed run may make another. Default is "auto".
    """

    out: str
    source: object
    input: InputDescription
    model_ref: object
    model_sha256: str
    method: str
    spec: MutationSpec
    output_plan: object
    bases: tuple
    chunk_size: int
    dtype: str = "float32"
    batch_size: int | None = None
    safe_mode: bool = True
    alt: bool = False
    state: str = "absent"
    resume: bool = False
    attrs: dict = field(default_factory=dict)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    target: str | None = None
    store_id: str | None = None
    staged: bool = False
    seq_input: int | str = 0
    other_inputs: object = None
    rc: bool = False
    shifts: tuple = (0,)
    read_chunk: int | None = None
    ensemble: object = None
    xla: object = "auto"

    def __post_init__(self):
        if self.target is None:
            object.__setattr__(self, "target", self.out)
        if self.store_id is None and not self.resume:
            object.__setattr__(self, "store_id", self.run_id)

    @property
    def replaces(self):
        """True when the run's store is swapped in at ``out`` once every chunk is done."""
        return self.target != self.out

    @property
    def averaged(self):
        """True when outputs are averaged over the reverse complement or shifts."""
        return self.rc or tuple(self.shifts) != (0,)

    @property
    def n_sequences(self):
        return self.input.n_sequences

    @property
    def start(self):
        return self.spec.start

    @property
    def end(self):
        return self.spec.end

    def params(self):
        """The run's settings as stored in the store's ``params`` and compared on resume."""
        others = {} if self.other_inputs is None else {"seq_input": self.seq_input,
                                                       **self.other_inputs.params()}
        return {
            "model_sha256": self.model_sha256,
            **self.input.params(),
            "start": self.spec.start,
            "end": self.spec.end,
            "method": self.method,
            "outputs": list(self.output_plan.outputs),
            **self.output_plan.params(),
            "alt": True if self.alt else None,
            "dtype": self.dtype,
            "chunk_size": int(self.chunk_size),
            **others,
            **self.view_params(),
            **({} if self.read_chunk is None else {"read_chunk": int(self.read_chunk)}),
            **(self.ensemble.params() if self.ensemble is not None else {}),
        }

    def executor_options(self):
        """Keywords of the run's ISM executor besides the model."""
        options = dict(start=self.spec.start, end=self.spec.end, batch_size=self.batch_size,
                       safe_mode=self.safe_mode, seq_input=self.seq_input)
        if self.method == "fast":
            options["xla"] = self.xla
        return options

    def view_params(self):
        """``rc`` / ``shifts`` where set: a run without them has no such keys."""
        params = {"rc": True} if self.rc else {}
        if tuple(self.shifts) != (0,):
            params["shifts"] = [int(k) for k in self.shifts]
        return params


def plan_run(model, input, out, *, chunk_size=None, batch_size=None, start=0, end=None,
             method="fast", genome=None, outputs=None, tasks=None, reduce=None,
             dtype="float32", overwrite=False, safe_mode=True, resize=False,
             skip_mismatches=False, alphabet="ACGT", seq_input=0, other_inputs=None, rc=False,
             shifts=None, read_chunk=None, ensemble=None, group_size=None, xla="auto"):
    """Validate a run and compare it with an existing store; writes nothing.

    Where the store goes is checked first (a ``memory://`` store is refused; a local folder must
    take a probe directory, removed at once), before the model is loaded.

    Parameters
    ----------
    model : keras.Model, str or list of str
        The model, or a path to a ``.keras`` / ``.h5`` file (that every worker can read); or an
        ensemble: a list of model files, a directory of them or a glob (file-name order).
    input : str or SequenceSource
        FASTA, BED / VCF (with ``genome``) or ``.npy`` (N, L, C) file, or an opened source
        (a ``SequenceSource``, or an object with its ``read``, ``ids``, ``alphabet``, ``length``,
        ``coords()`` and ``variants()``).
    out : str
        The Zarr store (local directory or fsspec URL every worker can reach).
    chunk_size : int, optional
        Sequences per chunk (one task, one Zarr chunk). Default is the store's on resume, else
        ``auto_chunk_size``: about 32k mutations per task, at least 8 chunks, at most 32 MiB of
        outputs per chunk.
    batch_size : int, optional
        Mutations per model call. Default is the executor's (256).
    start, end : int
        Mutated positions, half-open. Default is the whole sequence.
    method : {"fast", "naive"}
        Default is "fast".
    genome : str, optional
        Genome FASTA for BED / VCF inputs.
    outputs : list of str or str, optional
        Model outputs to store (names or indices, or one comma-separated string). Default is all.
    tasks : int, str or list, optional
        Keep only these entries of the last axis of every stored output: indices, or task names
        where the output's layer (or the model) has a ``task_names`` attribute. Default is all.
    reduce : str or dict, optional
        Reducers applied on the workers before writing, e.g. ``"profile=jsd"`` or
        ``{"profile": "bins:10"}`` (see ``fastism_dist.outputs``). Default stores the outputs as
        computed.
    dtype : {"float32", "float16"}
        Stored dtype. Default is float32.
    overwrite : bool
        Replace an existing store: the new one is written beside it and swapped in when every
        chunk is done (a URL store is replaced in place). Default is False.
    safe_mode : bool
        Keras safe mode when loading the model (False allows Lambda layers). Default is True.
    resize, skip_mismatches, alphabet
        Passed to ``open_sequences``.
    seq_input : int or str
        The model's sequence input, by index or name. Default is 0.
    other_inputs : str, ndarray, list or dict of ndarray, optional
        A multi-input model's other inputs, one row per sequence (held fixed while its sequence
        is mutated): a ``.npy`` file (one other input), a ``.npz`` file keyed by input name, or
        arrays (a dict by name, or a list in the model's input order). Not with VCF inputs.
    read_chunk : int, optional
        Sequences per Zarr chunk, smaller than the chunk size (which it must divide; an automatic
        chunk size is rounded up to a multiple of it): each task then writes one Zarr shard, a
        single file holding chunks of ``read_chunk`` sequences that readers fetch alone. For big
        tasks (long runs on GPUs) this keeps the file count at one per task and variable while
        reads stay small. Default is one Zarr chunk per task.
    rc : bool
        Store the mean of each output over the sequence and its reverse complement (ACGT
        alphabets only). Default is False.
    shifts : int, str or sequence of int, optional
        Also average over the sequence shifted by these positions: ``n`` means ``-n..n``, a list
        (``"-1,0,1"``, ``(0, 2)``) exactly those. Default is no shift.
    ensemble : {"mean", "keep"}, optional
        For an ensemble: store the mean over the models (default), or every model along a
        ``model`` dimension.
    group_size : int, optional
        For an ensemble: models per task (loaded together on a worker). Default is 8.
    xla : {"auto", "on", "off"} or bool
        Method "fast": compile the mutation pass with XLA ("on" / True), not ("off" / False),
        or let each worker time both in its warm-up and keep the faster ("auto"). Default is
        "auto".

    Returns
    -------
    RunPlan

    Raises
    ------
    FastISMError
        Subclasses for bad settings, models, inputs, and (without ``overwrite``) an existing
        store written with other parameters.
    """
    out = store_path(out)
    check_out_location(out, overwrite)
    check_settings(chunk_size, batch_size, dtype, method, read_chunk)
    xla = check_xla(xla, method)
    shifts = parse_shifts(shifts)
    members = model_files(model)
    check_options(ensemble, group_size, members)
    if members is not None:
        check_ensemble_options(other_inputs, rc, shifts)
        model = members[0]
    if is_model_file(model):
        client_tensorflow()
    keras_model = load_model(model, safe_mode=safe_mode)
    seq = find_sequence_input(keras_model, seq_input)
    spec = make_mutation_spec(seq.length, seq.channels, start, end)
    model_path = model if is_model_file(model) else None
    output_plan = _output_plan(keras_model, seq, outputs, tasks, reduce, model_path)
    spec_ens = None if members is None else plan_ensemble(members, keras_model, ensemble,
                                                          group_size, safe_mode)
    source = open_source(input, genome, seq.length, resize, skip_mismatches, alphabet)
    check_source(source, input, seq.length, seq.channels)
    others = plan_other_inputs(keras_model, seq, other_inputs, len(source))
    rc, shifts = check_views_of_run(keras_model, seq, spec, rc, shifts, source.alphabet)
    variants = source.variants()
    if variants is not None and others is not None:
        raise FastISMError(f"{describe(input)}: VCF inputs cannot be scored with other inputs "
                           "(--other-inputs); give the REF sequences as FASTA or .npy instead")
    if spec_ens is not None and variants is not None:
        raise FastISMError("ensembles do not score VCF inputs (their ALT alleles) yet; score "
                           "each model on its own, or give the variants' windows as a BED file")
    attrs = _store_attrs(source, variants, output_plan.outputs, input)
    if spec_ens is not None:
        attrs.update(spec_ens.attrs())
    state = store_state(out)
    _check_store(out, state, overwrite)
    resume = state == "store" and not overwrite
    if chunk_size is None and resume:
        chunk_size = read_chunk_size(out)
    if chunk_size is None:
        chunk_size = auto_chunk_size(len(source), spec.n_positions, len(spec.substitutions),
                                     chunk_shapes(keras_model, seq, output_plan, rc, shifts,
                                                  _kept_models(spec_ens)),
                                     dtype)
        if read_chunk is not None:
            chunk_size = -(-max(chunk_size, read_chunk) // read_chunk) * read_chunk
    read_chunk = sharding(read_chunk, int(chunk_size), len(source))
    run = RunPlan(
        out=out, source=source,
        input=InputDescription.of(input, source, genome, resize, skip_mismatches),
        model_ref=model_for_workers(model, keras_model),
        model_sha256=(model_sha256(model, keras_model) if spec_ens is None
                      else spec_ens.sha256), method=method, spec=spec,
        output_plan=output_plan, bases=tuple(str(b) for b in source.alphabet),
        chunk_size=int(chunk_size), dtype=dtype, batch_size=batch_size, safe_mode=safe_mode,
        alt=variants is not None, state=state, resume=resume, attrs=attrs,
        store_id=stored_run_id(out) if resume else None,
        seq_input=seq.name if others is not None else seq.index, other_inputs=others,
        rc=rc, shifts=shifts, read_chunk=read_chunk, ensemble=spec_ens, xla=xla,
    )
    if resume:
        if spec_ens is not None:
            check_ensemble_params(out, spec_ens)
        check_params(out, run.params())
    if overwrite and state in ("store", "zarr") and not is_url(out):
        run = _beside(run)
    return run


def _beside(run):
    """``run`` writing its store beside ``out``: an unfinished one of the same parameters
    (left by an interrupted run), else a new one."""
    params = normalise_params(run.params())
    for path in staged_stores(run.out):
        if store_state(path) == "store" and read_params(path) == params:
            return dataclasses.replace(run, target=path, store_id=stored_run_id(path),
                                       staged=True)
    return dataclasses.replace(run, target=staging_path(run.out, run.run_id))


def _output_plan(keras_model, seq, outputs, tasks, reduce, model_path=None):
    """The OutputPlan of the chosen outputs, with checked store names."""
    shapes = output_shapes(keras_model, seq)
    selected = choose_outputs(output_names(keras_model), outputs)
    plan = plan_outputs({k: shapes[k] for k in selected}, tasks=tasks, reduce=reduce,
                        task_names=task_names(keras_model, selected, model_path))
    check_dim_names(plan.dims)
    return plan


def _store_attrs(source, variants, outputs, input):
    """Extra store attributes: chromosome sizes of a genome input, skipped VCF records and, for
    VCF inputs, the ALT note."""
    attrs = {}
    sizes = source.chrom_sizes() if hasattr(source, "chrom_sizes") else None
    if sizes:  # for the headers of genome-coordinate exports (bigWig)
        attrs["chrom_sizes"] = [[chrom, length] for chrom, length in sizes.items()]
    skipped = list(getattr(source, "skipped", None) or [])
    if skipped:  # VCF records not scored (symbolic, REF mismatch with --skip-mismatches, ...)
        attrs["skipped_records"] = skipped[:MAX_SKIPPED_LISTED]
        attrs["n_skipped_records"] = len(skipped)
    if variants is None:
        return attrs
    check_alt_names(outputs)
    attrs["alt_note"] = alt_note(variants, outputs)
    n_indels = count_indels(variants)
    if n_indels:
        warnings.warn(f"{describe(input)}: {n_indels} of {len(source)} variant(s) are indels (REF "
                      "and ALT of different lengths); their ALT outputs (<output>_alt) are stored "
                      "as NaN", SequenceWarning, stacklevel=4)
    return attrs


def _check_store(out, state, overwrite):
    if state == "other":
        raise StoreMismatchError(f"{out} exists and is not a Zarr store; refusing to write there")
    if state == "zarr" and not overwrite:
        raise StoreMismatchError(f"{out} is a Zarr store not written by fastism_dist; use "
                                 "--overwrite (overwrite=True) to replace it")


def write_template(run):
    """Create the run's store at ``run.target``: coordinates, attributes and empty variables.

    The template is complete before it appears at that path. At ``out`` it replaces an
    incomplete template (or, for a URL store with ``overwrite``, the old store).
    """
    plan = run.output_plan
    create_template(
        run.target, ids=list(run.source.ids), positions=np.asarray(run.spec.positions),
        bases=list(run.bases), outputs=plan.shapes, params=run.params(),
        model_sha256=run.model_sha256, chunk_size=run.chunk_size,
        coords=store_coords(run.source), dtype=run.dtype,
        overwrite=not run.replaces and run.state != "absent",
        dims=plan.dims, alt=run.alt, attrs=run.attrs, run_id=run.store_id,
        read_chunk=run.read_chunk, **_model_dim(run.ensemble),
    )


def _kept_models(ensemble):
    """Models stored side by side per sequence: all of a ``keep`` ensemble's, else one."""
    return ensemble.n_models if ensemble is not None and ensemble.mode == "keep" else 1


def _model_dim(ensemble):
    """``create_template`` keywords of a ``keep`` ensemble's ``model`` dimension."""
    if ensemble is None or ensemble.mode != "keep":
        return {}
    return {"models": list(ensemble.names), "model_chunk": ensemble.group_size}


def publish(run):
    """Swap a replacing run's finished store in at ``out``; nothing to do for other runs.

    Raises
    ------
    FastISMError
        Some chunk of the new store is not done: the old store is kept.
    """
    if not run.replaces:
        return
    done = done_mask(run.target)
    if not done.all():
        raise FastISMError(f"{run.target}: {int((~done).sum())} of {len(done)} chunks are not "
                           f"done; {run.out} is left as it was")
    replace_store(run.target, run.out)


def discard_unstarted(run):
    """Delete a replacing run's new store if it holds no finished chunk (its run failed)."""
    if run.replaces and os.path.isdir(run.target) and not done_mask(run.target).any():
        shutil.rmtree(run.target)
