"""Protocol objects of Guantong v1: identifiers, canonical JSON, hashes, signatures,
entries, signed heads, segment framing and the stable error codes."""

from schemas.canonical import canonical_bytes, parse_canonical, parse_json
from schemas.errors import CanonicalError, ErrorCode, FramingError, GuantongError
from schemas.hashing import ZERO_HASH, sha256_hex
from schemas.ids import Tier, check_node_id, is_in_subtree, is_node_id, parent_of, uuid7
from schemas.log import MAX_ENTRY_BYTES, Entry, SignedHead, build_entry, sign_head
from schemas.segments import Segment, decode_segments, encode_segment, split_lines
from schemas.signing import Signer, key_id, verify_bytes, verify_object
from schemas.times import Clock, format_time, parse_time, system_clock

PROTOCOL_VERSION = 1

__all__ = [
    "MAX_ENTRY_BYTES",
    "PROTOCOL_VERSION",
    "ZERO_HASH",
    "CanonicalError",
    "Clock",
    "Entry",
    "ErrorCode",
    "FramingError",
    "GuantongError",
    "Segment",
    "SignedHead",
    "Signer",
    "Tier",
    "build_entry",
    "canonical_bytes",
    "check_node_id",
    "decode_segments",
    "encode_segment",
    "format_time",
    "is_in_subtree",
    "is_node_id",
    "key_id",
    "parent_of",
    "parse_canonical",
    "parse_json",
    "parse_time",
    "sha256_hex",
    "sign_head",
    "split_lines",
    "system_clock",
    "uuid7",
    "verify_bytes",
    "verify_object",
]
