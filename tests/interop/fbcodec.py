#!/usr/bin/python3
"""Reference encoder/decoder for the APISIX ext-plugin messages.

Usage: /usr/bin/python3 fbcodec.py GENDIR encode|decode  < in.json > out.json

GENDIR holds the output of `flatc --python -o GENDIR ext-plugin.fbs`. Only that
generated code and flatbuffers.Builder touch the bytes: this is the independent
side of the wire-compatibility tests, so it must not share logic with the runner.
See README.md for the JSON shapes. The codec itself is a6codec.py.
"""
import json
import sys

if len(sys.argv) != 3 or sys.argv[2] not in ("encode", "decode"):
    sys.exit("usage: fbcodec.py GENDIR encode|decode")
sys.path.insert(0, sys.argv[1])

from a6codec import decode, encode  # noqa: E402 -- needs GENDIR on sys.path first


def main():
    run = encode if sys.argv[2] == "encode" else decode
    out = []
    # Bytes in, ASCII out: independent of the caller's locale.
    for item in json.loads(sys.stdin.buffer.read()):
        try:
            out.append(run(item))
        except Exception as e:  # one bad item must not hide the verdict on the others
            out.append({"error": "%s: %s" % (type(e).__name__, e)})
    sys.stdout.write(json.dumps(out) + "\n")


main()
