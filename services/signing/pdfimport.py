"""PDF objects prepared once in a template and written into each document as bytes: what keeps a
batch from copying and serialising the same appearance and font objects for every file."""

from __future__ import annotations

from io import BytesIO
from typing import Any

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.writer import BasePdfFileWriter, PdfFileWriter

__all__ = ["PreparedImport"]


class PreparedImport:
    """What ``writer.import_object(ref)`` adds to a writer — the objects reachable from ``ref`` in
    a template — written out once. Each document then gets those bytes under object numbers of
    its own, the same file pyHanko's import would write, without a deep copy of the objects
    and writing them anew every time (a tenth of a signature's CPU time, that was). Nothing
    reads the template afterwards, so documents in several threads can take it at once."""

    def __init__(self, ref: generic.IndirectObject) -> None:
        self._ref = ref
        scratch = PdfFileWriter(stream_xrefs=False)
        before = set(scratch.objects)
        top = scratch.import_object(ref)
        # the import numbers objects in the order it meets them; so will reference_in
        added = sorted(key for key in scratch.objects if key not in before)
        slots = {idnum: index for index, (_, idnum) in enumerate(added)}
        assert isinstance(top, generic.IndirectObject) and slots[top.idnum] == 0
        self._objects: list[list[bytes | int]] = []
        for key in added:
            out = _SlotRecorder()
            _with_slots(scratch.objects[key], slots).write_to_stream(out)
            self._objects.append(out.pieces())

    def reference_in(self, writer: BasePdfFileWriter) -> generic.IndirectObject:
        if writer.security_handler is not None:  # each object's strings and streams get encrypted
            return writer.import_object(self._ref)
        refs = [writer.allocate_placeholder() for _ in self._objects]
        for ref, pieces in zip(refs, self._objects, strict=True):
            writer.add_object(_WrittenObject(pieces, refs), idnum=ref.idnum)
        return refs[0]


class _Slot(generic.PdfObject):
    """Where a reference to the ``index``-th object of a prepared import goes."""

    def __init__(self, index: int) -> None:
        self.index = index

    def write_to_stream(self, stream: Any, handler: Any = None, container_ref: Any = None) -> None:
        stream.slot(self.index)


class _SlotRecorder(BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self._slots: list[tuple[int, int]] = []  # (offset, index)

    def slot(self, index: int) -> None:
        self._slots.append((self.tell(), index))

    def pieces(self) -> list[bytes | int]:
        data, pieces, start = self.getvalue(), [], 0
        for offset, index in self._slots:
            pieces += [data[start:offset], index]
            start = offset
        pieces.append(data[start:])
        return pieces


def _with_slots(obj: generic.PdfObject, slots: dict[int, int]) -> generic.PdfObject:
    """``obj`` (a fresh copy made by an import) with each reference replaced by its slot."""
    if isinstance(obj, generic.IndirectObject):
        return _Slot(slots[obj.idnum])
    if isinstance(obj, generic.DictionaryObject):  # streams too: their data stays as it is
        for key, value in list(obj.items()):
            obj[key] = _with_slots(value, slots)
    elif isinstance(obj, generic.ArrayObject):
        obj[:] = [_with_slots(value, slots) for value in obj]
    return obj


class _WrittenObject(generic.PdfObject):
    """A prepared object in a document: its bytes, with the references filled in."""

    def __init__(self, pieces: list[bytes | int], refs: list[generic.IndirectObject]) -> None:
        self._pieces = pieces
        self._refs = refs

    def write_to_stream(self, stream: Any, handler: Any = None, container_ref: Any = None) -> None:
        for piece in self._pieces:
            if isinstance(piece, int):
                ref = self._refs[piece]
                stream.write(b"%d %d R" % (ref.idnum, ref.generation))
            else:
                stream.write(piece)
