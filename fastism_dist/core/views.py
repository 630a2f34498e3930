"""Views of a sequence: its reverse complement and small shifts, and their outputs mapped back.

A view ``(rc, k)`` of a forward sequence ``x`` (L, C) is ``x`` shifted by ``k`` positions and,
when ``rc``, reverse-complemented afterwards:

* shift: ``shifted[i] = x[i - k]`` where ``0 <= i - k < L``, else an all-zero row (N). A base at
  ``p`` is at ``p + k``; bases pushed past either end are dropped.
* reverse complement (ACGT channel order only): ``rc[i, c] = shifted[L - 1 - i, 3 - c]``.

A substitution window of width ``w`` starting at forward position ``p`` starts at ``q = p + k``
in the shifted view and at ``L - w - q`` in its reverse complement, where it holds the reverse
complement of the substitution (rows reversed, channels reversed). A window wholly outside the
view leaves the view at its reference; a window cut by the view's edge is refused.

A profile output (rank >= 2 per sequence: ``(L_out, ...)``, axis 0 the length axis) is flipped
along its length axis for an RC view and, for a shift ``k``, moved back by ``k / r`` bins where
``r = L / L_out`` is its resolution: bin ``j`` of the forward output is bin ``j + k / r`` of the
view's output; bins a view does not cover are left out of that bin's mean.

Shapes: ``B`` sequences, ``L`` length, ``C`` alphabet, ``W`` mutated positions, ``S``
substitutions, ``w`` substitution width.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastism_dist.errors import MutationSpecError

DNA_BASES = "ACGT"


@dataclass(frozen=True)
class View:
    """One view: shift by ``shift`` positions, then reverse-complement if ``rc``."""

    rc: bool
    shift: int


def parse_shifts(value):
    """Shifts as a tuple of distinct ints.

    Parameters
    ----------
    value : None, int, str or sequence of int
        None: no shifts, ``(0,)``. An int ``n >= 0`` (or its string): ``-n..n``. A
        comma-separated string or a sequence: exactly those shifts, e.g. ``"-1,0,1"`` or
        ``(0, 2)``.

    Returns
    -------
    tuple of int
    """
    if value is None:
        return (0,)
    if isinstance(value, (int, np.integer)) or (isinstance(value, str) and "," not in value):
        n = _as_int(value)
        if n < 0:
            raise MutationSpecError(f"--shifts {value}: a single value n means -n..n and must be "
                                    "non-negative; give a list such as --shifts=-1,0")
        return tuple(range(-n, n + 1))
    items = value.split(",") if isinstance(value, str) else list(value)
    shifts = tuple(_as_int(v, value) for v in items)
    if not shifts or len(set(shifts)) != len(shifts):
        raise MutationSpecError(f"--shifts {_show(value)}: expected distinct integers such as "
                                "-1,0,1")
    return shifts


def _as_int(item, whole=None):
    text = str(item).strip()
    try:
        if isinstance(item, (bool, float)) or not text.lstrip("+-").isdigit():
            raise ValueError
        return int(text)
    except ValueError:
        raise MutationSpecError(f"--shifts {_show(item if whole is None else whole)}: expected an "
                                "integer n (shifts -n..n) or a list such as -1,0,1") from None


def _show(value):
    return value if isinstance(value, str) else ",".join(str(v) for v in np.ravel(value))


def make_views(rc=False, shifts=(0,)):
    """The views averaged: every shift forward, then (with ``rc``) every shift reverse-complemented.

    Returns
    -------
    list of View
    """
    return [View(strand, int(k)) for strand in ((False, True) if rc else (False,)) for k in shifts]


def check_views(rc, shifts, length, channels, bases=None):
    """Raise ``MutationSpecError`` for shifts or an alphabet the views cannot handle.

    Parameters
    ----------
    rc : bool
    shifts : tuple of int
    length, channels : int
        L and C of the sequence input.
    bases : str, optional
        Letters of the C channels; the reverse complement needs ``ACGT``. Default is ACGT when
        C is 4.
    """
    if rc:
        letters = "".join(bases).upper() if bases is not None else None
        if channels != 4 or (letters is not None and letters != DNA_BASES):
            raise MutationSpecError(
                f"--rc needs DNA channels in the order ACGT (complement of channel c is 3 - c); "
                f"this run's alphabet is {''.join(bases) if bases else f'{channels} channels'}")
    bad = [k for k in shifts if abs(int(k)) >= length]
    if bad:
        raise MutationSpecError(f"--shifts {bad[0]}: a shift must be shorter than the sequence "
                                f"({length})")


def reverse_complement(x):
    """(B, L, C) -> (B, L, C): positions and ACGT channels reversed."""
    return np.ascontiguousarray(x[:, ::-1, ::-1])


def shift_sequences(x, k):
    """(B, L, C) -> (B, L, C) moved by ``k`` positions; vacated rows are zeros (N)."""
    if k == 0:
        return x
    out = np.zeros_like(x)
    if k > 0:
        out[:, k:] = x[:, :-k]
    else:
        out[:, :k] = x[:, -k:]
    return out


def view_sequences(x, view):
    """The view of (B, L, C) sequences ``x``: shifted, then reverse-complemented if ``view.rc``."""
    shifted = shift_sequences(x, view.shift)
    return reverse_complement(shifted) if view.rc else shifted


def rc_substitutions(substitutions):
    """(S, w, C) -> (S, w, C): each substitution reverse-complemented (rows and channels)."""
    return np.ascontiguousarray(np.asarray(substitutions)[:, ::-1, ::-1])


def view_starts(view, starts, length, width):
    """Where forward window starts land in a view.

    Parameters
    ----------
    view : View
    starts : ndarray of int, shape (W,)
        Forward window starts.
    length, width : int
        L and w.

    Returns
    -------
    inside : ndarray of bool, shape (W,)
        The window lies wholly inside the view.
    where : ndarray of int, shape (W,)
        Its start in the view (meaningful where ``inside``).
    """
    q = np.asarray(starts) + view.shift
    inside = (q >= 0) & (q <= length - width)
    cut = ~inside & (q > -width) & (q < length)
    if cut.any():
        p = int(np.asarray(starts)[cut][0])
        raise MutationSpecError(f"--shifts {view.shift}: the {width}-wide window at {p} is cut by "
                                "the sequence's edge in that view; narrow start/end")
    return inside, (length - width - q if view.rc else q)


def start_range(views, starts, length, width, rc):
    """Half-open range of view window starts an executor of one strand must cover.

    Returns
    -------
    tuple of int or None
        ``(lo, hi)`` over every view of strand ``rc``; None where none lands inside.
    """
    found = [view_starts(v, starts, length, width) for v in views if v.rc == rc]
    where = np.concatenate([w[inside] for inside, w in found]) if found else np.zeros(0, int)
    if where.size == 0:
        return None
    return int(where.min()), int(where.max()) + 1


def strand_ranges(views, starts, length, width):
    """``{rc: start_range(...)}`` for each strand of ``views``; raises ``MutationSpecError``
    where every mutated position is shifted out of every view."""
    ranges = {strand: start_range(views, starts, length, width, strand)
              for strand in sorted({v.rc for v in views})}
    if all(r is None for r in ranges.values()):
        raise MutationSpecError(f"--shifts {','.join(str(v.shift) for v in views)}: every "
                                "mutated position is shifted out of the sequence")
    return ranges


def output_resolutions(length, shapes, shifts):
    """Resolution ``r`` (bases per bin) of each output's length axis; None for outputs without.

    Parameters
    ----------
    length : int
        L.
    shapes : list of tuple of int
        One sequence's shape of each output; rank >= 2 means axis 0 is a length axis.
    shifts : tuple of int

    Returns
    -------
    list of int or None
    """
    resolutions = []
    for shape in shapes:
        if len(shape) < 2:
            resolutions.append(None)
            continue
        bins = int(shape[0])
        res = length // bins if bins and length % bins == 0 else None
        moved = [k for k in shifts if k and (res is None or k % res)]
        if moved:
            what = (f"{res}-base bins" if res else
                    f"{bins} positions for a {length}-long input (not a whole number of bases each)")
            raise MutationSpecError(
                f"--shifts {moved[0]}: a profile output of shape {tuple(shape)} has {what}, so it "
                f"cannot be shifted back by {moved[0]}; use shifts that are multiples of its bin "
                "size or no --shifts")
        resolutions.append(res)
    return resolutions


def back_map(out, view, resolution):
    """A view's output in forward orientation, and which length bins the view covers.

    Parameters
    ----------
    out : ndarray of shape (M, *out_k)
    view : View
    resolution : int or None
        From ``output_resolutions`` (None: no length axis).

    Returns
    -------
    mapped : ndarray of shape (M, *out_k)
        Zero at bins the view does not cover.
    covered : ndarray of bool, shape (L_out,), or None
        None for an output without length axis (every view covers it).
    """
    if resolution is None:
        return out, None
    if view.rc:
        out = out[:, ::-1]
    bins = out.shape[1]
    d = view.shift // resolution
    covered = np.zeros(bins, dtype=bool)
    covered[max(0, -d):min(bins, bins - d)] = True
    if d == 0:
        return np.ascontiguousarray(out), covered
    mapped = np.zeros_like(out)
    mapped[:, covered] = out[:, np.flatnonzero(covered) + d]
    return mapped, covered
