"""The letter codec: one-hot encoding, decoding and reverse complement.

Letters of the alphabet map to their channel, in upper or lower case. ``N`` and the IUPAC
ambiguity codes ``R Y K M S W B D H V`` (those not in the alphabet) become all-zero rows. Any
other character is an :class:`~fastism_dist.errors.InputError` naming its 1-based position.

Shapes, channels-last like Keras: ``B`` sequences, ``L`` sequence length, ``C`` alphabet size.
"""

from __future__ import annotations

import functools
import re

import numpy as np

from fastism_dist.errors import InputError

__all__ = ["ALPHABET", "IUPAC_ZERO", "one_hot", "decode", "reverse_complement"]

ALPHABET = "ACGT"
"""The default alphabet: channel ``c`` of a one-hot row is ``ALPHABET[c]``."""

IUPAC_ZERO = "NRYKMSWBDHV"
"""Letters read as all-zero rows (unless they are in the alphabet)."""

WHITESPACE = " \t\r\n"
"""Characters ignored inside a FASTA record."""

INVALID = 255
"""Code of a byte that is no letter (in :func:`letter_codes`)."""

_COMPLEMENT = dict(zip("ACGTURYKMSWBDHVN", "TGCAAYRMKSWVHDBN"))


@functools.lru_cache(maxsize=32)
def _tables(alphabet):
    """Byte -> code table and the one-hot rows of an alphabet.

    Returns
    -------
    table : ndarray of shape (256,), uint8
        Channel of each byte, ``C`` for an all-zero letter, :data:`INVALID` for anything else.
    rows : ndarray of shape (C + 1, C), float32
        The one-hot row of each code (the last one all zero).
    """
    if not isinstance(alphabet, str) or not alphabet:
        raise InputError(f"alphabet must be a non-empty string of letters, got {alphabet!r}")
    letters = alphabet.upper()
    if not (letters.isascii() and letters.isalpha()) or len(set(letters)) != len(letters):
        raise InputError(f"alphabet must be distinct ASCII letters, got {alphabet!r}")
    if len(letters) > 254:
        raise InputError(f"alphabet has {len(letters)} letters; at most 254 are supported")
    channels = len(letters)
    table = np.full(256, INVALID, dtype=np.uint8)
    for ch in IUPAC_ZERO:
        if ch not in letters:
            table[ord(ch)] = table[ord(ch.lower())] = channels
    for i, ch in enumerate(letters):
        table[ord(ch)] = table[ord(ch.lower())] = i
    rows = np.zeros((channels + 1, channels), dtype=np.float32)
    rows[np.arange(channels), np.arange(channels)] = 1.0
    return table, rows


def check_alphabet(alphabet):
    """The alphabet in upper case; raises :class:`InputError` for a bad one."""
    _tables(alphabet)
    return alphabet.upper()


def one_hot_rows(alphabet):
    """The ``(C + 1, C)`` float32 one-hot row of each code of :func:`letter_codes`."""
    return _tables(alphabet)[1]


def letter_codes(data, alphabet):
    """Codes of the bytes ``data`` and the 0-based index of the first invalid byte.

    Parameters
    ----------
    data : bytes
        ASCII letters, ``L`` of them.
    alphabet : str
        Channel letters.

    Returns
    -------
    codes : ndarray of shape (L,), uint8
        Channel per letter, ``C`` for an all-zero letter.
    first_invalid : int
        Index of the first byte that is no letter, or -1.
    """
    table, _ = _tables(alphabet)
    codes = table[np.frombuffer(data, dtype=np.uint8)]
    bad = np.flatnonzero(codes == INVALID)
    return codes, (int(bad[0]) if bad.size else -1)


@functools.lru_cache(maxsize=32)
def invalid_pattern(alphabet):
    """A compiled regex matching a character that is neither a letter nor whitespace."""
    table, _ = _tables(alphabet)
    allowed = "".join(chr(b) for b in range(256) if table[b] != INVALID) + WHITESPACE
    return re.compile(f"[^{re.escape(allowed)}]")


def bad_letter_text(ch, alphabet):
    """What is wrong with the character ``ch`` (a str or a byte value)."""
    shown = repr(chr(ch)) if isinstance(ch, int) else repr(ch)
    return (
        f"invalid character {shown} (allowed: {alphabet} in any case, and N or the IUPAC "
        f"codes {IUPAC_ZERO[1:]}, which are read as all-zero rows)"
    )


def one_hot(seq, alphabet=ALPHABET):
    """One-hot encode a sequence.

    Parameters
    ----------
    seq : str or bytes
        The letters. Lower case is accepted; ``N`` and the IUPAC codes ``RYKMSWBDHV`` that are not
        in the alphabet give all-zero rows.
    alphabet : str, optional
        Channel letters, ``C = len(alphabet)``. Default is ``"ACGT"``.

    Returns
    -------
    ndarray of shape (L, C)
        float32, one row per letter.

    Raises
    ------
    InputError
        For any other character, naming its 1-based position.
    """
    letters = check_alphabet(alphabet)
    if isinstance(seq, (bytes, bytearray)):
        data = bytes(seq)
    else:
        text = str(seq)
        try:
            data = text.encode("ascii")
        except UnicodeEncodeError as err:
            bad = bad_letter_text(text[err.start], letters)
            raise InputError(f"sequence position {err.start + 1}: {bad}") from None
    codes, bad = letter_codes(data, letters)
    if bad >= 0:
        raise InputError(f"sequence position {bad + 1}: {bad_letter_text(data[bad], letters)}")
    return one_hot_rows(letters)[codes]


def decode(onehot, alphabet=ALPHABET):
    """Letters of a one-hot array: the letter of each row's largest channel, ``N`` for a zero row.

    Parameters
    ----------
    onehot : array_like of shape (L, C) or (B, L, C)
        One-hot rows.
    alphabet : str, optional
        Channel letters. Default is ``"ACGT"``.

    Returns
    -------
    str or list of str
        One string for a ``(L, C)`` input, a list of ``B`` strings for ``(B, L, C)``.
    """
    letters = check_alphabet(alphabet)
    x = np.asarray(onehot)
    if x.ndim == 3:
        return [decode(row, letters) for row in x]
    if x.ndim != 2 or x.shape[1] != len(letters):
        raise InputError(f"decode expects shape (L, {len(letters)}) or (B, L, {len(letters)}), got {x.shape}")
    chars = np.array(list(letters) + ["N"])
    idx = np.where(np.any(x != 0, axis=1), np.argmax(x, axis=1), len(letters))
    return "".join(chars[idx].tolist())


@functools.lru_cache(maxsize=32)
def complement_permutation(alphabet):
    """Channel permutation taking each base to its complement, or None if a letter has none.

    Returns
    -------
    ndarray of shape (C,) or None
    """
    letters = check_alphabet(alphabet)
    perm = []
    for ch in letters:
        if ch == "A":
            comp = "T" if "T" in letters else "U"
        else:
            comp = _COMPLEMENT.get(ch)
        if comp is None or comp not in letters:
            return None
        perm.append(letters.index(comp))
    return np.array(perm)


def reverse_complement(x, alphabet=ALPHABET):
    """Reverse complement of one-hot sequences.

    Parameters
    ----------
    x : ndarray of shape (..., L, C)
        One-hot rows; all-zero rows stay all-zero.
    alphabet : str, optional
        Channel letters; must be closed under complement (``ACGT`` in any order, or ``ACGU``).
        Default is ``"ACGT"``.

    Returns
    -------
    ndarray of shape (..., L, C)
        For ``ACGT`` this is ``x[..., ::-1, ::-1]``.
    """
    perm = complement_permutation(alphabet)
    if perm is None:
        raise InputError(f"alphabet {alphabet!r} has no complement for every letter; cannot reverse-complement")
    return np.asarray(x)[..., ::-1, :][..., perm]
