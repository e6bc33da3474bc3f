"""The .fvc bitstream: header and packets, reader and writer, quantiser and motion entropy coder.

Pure numpy + constriction (no torch), so that decoders and tools can use it alone.
"""
from .constants import MotionKind
from .errors import BitstreamError, SymbolError, TruncatedStreamError
from .header import StreamHeader, default_header, parse_header
from .inspect import summarize
from .motion_coder import MotionDecoder, MotionEncoder
from .packets import EndPacket, KeyframePacket, MotionPacket, NotePacket, PacketType, UnknownPacket, UseSlotPacket
from .parser import PacketInfo, PacketParser
from .reader import StreamReader
from .symbols import GroupParams, SymbolGroup, default_params, dequantize, layout, quantize, scaled_params
from . import transport  # .fvc over UDP (spec §12); its names live in bitstream.transport
from .writer import FileStreamWriter, StreamWriter

__all__ = [
    "BitstreamError", "EndPacket", "FileStreamWriter", "GroupParams", "KeyframePacket", "MotionDecoder",
    "MotionEncoder", "MotionKind", "MotionPacket", "NotePacket", "PacketInfo", "PacketParser", "PacketType",
    "StreamHeader", "StreamReader", "StreamWriter", "SymbolError", "SymbolGroup", "TruncatedStreamError",
    "UnknownPacket", "UseSlotPacket", "default_header", "default_params", "dequantize", "layout", "parse_header",
    "quantize", "scaled_params", "summarize",
]
