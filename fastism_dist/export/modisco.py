"""TF-MoDISco inputs: one-hot sequences and hypothetical ISM contributions as ``.npz`` files.

modisco-lite's ``modisco motifs -s ohe.npz -a attr.npz`` reads the array under the key
``arr_0`` of each file, length last: ``(N, 4, L)``. The attributions are *hypothetical*
contributions: a value for every base at every position, not only the reference base.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass

import numpy as np

from fastism_dist.analysis import choose_output, mean_centred
from fastism_dist.errors import FastISMError
from fastism_dist.export.names import ATTRIBUTIONS_FILE, NPZ_KEY, SEQUENCES_FILE
from fastism_dist.export.stream import (
    as_text,
    atomic_file,
    one_value_per_mutation,
    open_store,
    require_done,
    seq_chunks,
)
from fastism_dist.store import BASE, POS, REF_BASE, SEQ



@dataclass(frozen=True)
class ModiscoFiles:
    """What :func:`export_modisco` wrote.

    Attributes
    ----------
    sequences : str
        ``ohe.npz``: one-hot reference sequences, (N, C, L) float32.
    attributions : str
        ``attr.npz``: hypothetical contributions, (N, C, L) float32.
    shape : tuple of int
        (N, C, L).
    """

    sequences: str
    attributions: str
    shape: tuple


class NpzArrayWriter:
    """Write one array into an ``.npz`` file block by block along its first axis.

    ``np.load(path)["arr_0"]`` reads it back whole. The file is written under a temporary name
    and renamed when every row is there (see :func:`atomic_file`).

    Parameters
    ----------
    file : str
        The temporary path to write (the caller renames it).
    shape : tuple of int
        Shape of the whole array.
    dtype : numpy dtype
    """

    def __init__(self, file, shape, dtype=np.float32):
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.rows = 0
        self._zip = zipfile.ZipFile(file, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1)
        self._member = self._zip.open(f"{NPZ_KEY}.npy", "w", force_zip64=True)
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                  "shape": self.shape}
        np.lib.format.write_array_header_2_0(self._member, header)

    def write(self, block):
        """Append ``block`` of shape (n, *shape[1:]) as the next ``n`` rows."""
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.shape[1:] != self.shape[1:] or self.rows + len(block) > self.shape[0]:
            raise ValueError(f"block of shape {block.shape} does not fit the rows left of "
                             f"{self.shape} after {self.rows}")
        self._member.write(block.tobytes())
        self.rows += len(block)

    def close(self, complete=True):
        """Finish the file; with ``complete``, raise if fewer rows were written than its shape says."""
        self._member.close()
        self._zip.close()
        if complete and self.rows != self.shape[0]:
            raise ValueError(f"{self.rows} of {self.shape[0]} rows written")


def one_hot_letters(letters, bases):
    """One-hot of reference letters, length last.

    Parameters
    ----------
    letters : ndarray of str, shape (B, L)
        ``ref_base`` of a chunk.
    bases : sequence of str, length C
        The store's ``base`` letters.

    Returns
    -------
    ndarray of float32, shape (B, C, L)
        1 where the letter is the base; all-zero columns at N (and any letter not in ``bases``).
    """
    letters, bases = as_text(letters), as_text(bases)
    return (letters[:, None, :] == bases[None, :, None]).astype(np.float32)


def hypothetical_contributions(part, output, task=None, sum_tasks=False):
    """ISM hypothetical contributions of a chunk: each base's output minus the mean over bases.

    Parameters
    ----------
    part : xarray.Dataset
        The sequences of one chunk of a store.
    output : str
    task, sum_tasks
        See :func:`one_value_per_mutation`.

    Returns
    -------
    ndarray of float32, shape (B, C, L)
    """
    centred = one_value_per_mutation(mean_centred(part, output), task, sum_tasks)
    return np.asarray(centred.transpose(SEQ, BASE, POS).values, dtype=np.float32)


def export_modisco(store, out_dir, output=None, task=None, sum_tasks=False, progress=True):
    """Write TF-MoDISco's inputs for one output of a store: ``ohe.npz`` and ``attr.npz``.

    Parameters
    ----------
    store : str or os.PathLike
        A complete store.
    out_dir : str or os.PathLike
        Folder for the two files (created if needed; existing files are replaced).
    output : str, optional
        Default is the store's only output.
    task : int, str or dict, optional
        The task of the output to export: an index or label along its first task dimension (or
        a dict, see :func:`fastism_dist.analysis.select_task`).
    sum_tasks : bool
        Export the sum over the output's tasks instead. An output with several values per
        mutation needs ``task`` or ``sum_tasks``. Default is False.
    progress : bool
        Show a progress bar. Default is True.

    Returns
    -------
    ModiscoFiles
        ``ohe.npz``: the reference sequences rebuilt from ``ref_base`` (N as all-zero columns);
        ``attr.npz``: at each stored position, the output for each base minus the mean over the
        bases. Both (N sequences, C bases, L stored positions) float32 under ``arr_0``.
    """
    path, ds = open_store(store)
    output = choose_output(ds, output)
    require_done(path, "exporting TF-MoDISco inputs")
    one_value_per_mutation(ds[output].isel({SEQ: slice(0, 1)}), task, sum_tasks)
    bases = ds[BASE].values
    shape = (ds.sizes[SEQ], ds.sizes[BASE], ds.sizes[POS])
    if shape[0] == 0:
        raise FastISMError(f"store {path} holds no sequences")
    out_dir = os.fspath(out_dir)
    files = ModiscoFiles(os.path.join(out_dir, SEQUENCES_FILE),
                         os.path.join(out_dir, ATTRIBUTIONS_FILE), shape)
    with atomic_file(files.sequences) as ohe_file, atomic_file(files.attributions) as attr_file:
        sequences = NpzArrayWriter(ohe_file, shape)
        attributions = NpzArrayWriter(attr_file, shape)
        try:
            for rows in seq_chunks(path, progress, desc=f"modisco {output}"):
                part = ds.isel({SEQ: rows})
                sequences.write(one_hot_letters(part[REF_BASE].values, bases))
                attributions.write(hypothetical_contributions(part, output, task, sum_tasks))
        except BaseException:
            sequences.close(complete=False)
            attributions.close(complete=False)
            raise
        sequences.close()
        attributions.close()
    return files
