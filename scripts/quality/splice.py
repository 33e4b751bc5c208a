#!/usr/bin/env python3
"""Analysis tool of the quality study (docs/QUALITY.md, "Why"): a copy of BASE.gguf whose tensors
matching a regular expression are taken, bytes and type as they are, from DONOR.gguf (same model,
same tensor names and shapes). Used to measure how much of a difference between two quantized files
comes from which tensors. Needs the `gguf` package (pip install gguf==0.19.0); never used by Squint.

Usage: python3 scripts/quality/splice.py BASE.gguf DONOR.gguf REGEX OUT.gguf
"""
import re
import sys

import gguf


def main():
    base_path, donor_path, pattern, out_path = sys.argv[1:5]
    base, donor = gguf.GGUFReader(base_path), gguf.GGUFReader(donor_path)
    rx = re.compile(pattern)
    donor_t = {t.name: t for t in donor.tensors}
    arch = base.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(out_path, arch)
    for name, field in base.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        vtype = field.types[0]
        sub = field.types[1] if vtype == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(name, field.contents(), vtype, sub)
    taken = []
    for t in base.tensors:
        src = donor_t[t.name] if rx.search(t.name) else t
        if src is not t:
            assert list(src.shape) == list(t.shape), t.name
            taken.append(f"{t.name} ({src.tensor_type.name})")
        w.add_tensor(t.name, src.data, raw_dtype=src.tensor_type)  # data: bytes [rows, row bytes] or floats
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {out_path}: {len(taken)} tensors from {donor_path}: " + ", ".join(taken))


if __name__ == "__main__":
    main()
