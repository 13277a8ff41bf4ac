#!/bin/sh
# Self-check of the reference codec alone (no runner involved):
#  1. every message type round-trips encode -> decode unchanged, including
#     unicode, absent vs empty fields, absent (default) scalars and every union case;
#  2. flatc itself reads a buffer encoded by fbcodec.py as expected;
#  3. decode reports {"error"} for undecodable input.
# Usage: sh selfcheck.sh        (needs /usr/bin/flatc and /usr/bin/python3)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
flatc --python -o "$work/gen" "$here/ext-plugin.fbs"

cd "$work"
/usr/bin/python3 - "$here/fbcodec.py" "$work/gen" "$here/ext-plugin.fbs" <<'EOF'
import base64, json, subprocess, sys

codec, gen, schema = sys.argv[1:]

def run(mode, items):
    out = subprocess.run(["/usr/bin/python3", codec, gen, mode], input=json.dumps(items),
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)

def b64(raw):
    return base64.b64encode(raw).decode()

E = lambda n, v: {"name": n, "value": v}
uni = "héllo wörld ✓ 日本 🚀"
cases = [
    ("PrepareConfReq", {"conf": [E("say", '{"body":"' + uni + '"}'), E("", ""), E(None, None)], "key": "route-1"}),
    ("PrepareConfReq", {"conf": [], "key": ""}),
    ("PrepareConfReq", {"conf": None, "key": None}),
    ("PrepareConfResp", {"conf_token": 4294967295}),
    ("PrepareConfResp", {"conf_token": 0}),
    ("HTTPReqCallReq", {"id": 1, "src_ip": b64(bytes([127, 0, 0, 1])), "method": 14, "path": "/" + uni,
                        "args": [E("a", "1"), E("a", "2"), E("flag", None)],
                        "headers": [E("x-" + uni, uni)], "conf_token": 9}),
    ("HTTPReqCallReq", {"id": 0, "src_ip": b64(bytes(range(16))), "method": 0, "path": "",
                        "args": [], "headers": [], "conf_token": 0}),
    ("HTTPReqCallReq", {"id": 2, "src_ip": "", "method": 0, "path": None,
                        "args": None, "headers": None, "conf_token": 0}),
    ("HTTPReqCallReq", {"id": 3, "src_ip": None, "method": 255, "path": None,
                        "args": None, "headers": None, "conf_token": 1}),
    ("HTTPReqCallResp", {"id": 5, "action": None}),
    ("HTTPReqCallResp", {"id": 6, "action": {"stop": {"status": 403, "headers": [E("x", uni)],
                                                      "body": b64(uni.encode())}}}),
    ("HTTPReqCallResp", {"id": 0, "action": {"stop": {"status": 0, "headers": None, "body": None}}}),
    ("HTTPReqCallResp", {"id": 7, "action": {"stop": {"status": 65535, "headers": [], "body": ""}}}),
    ("HTTPReqCallResp", {"id": 8, "action": {"rewrite": {"path": "/" + uni, "headers": [E("host", "h"), E("del", None)],
                                                         "args": [E("k", uni)], "resp_headers": [E("x-r", "1")],
                                                         "body": b64(b"\x00\xff\x10")}}}),
    ("HTTPReqCallResp", {"id": 9, "action": {"rewrite": {"path": None, "headers": None, "args": None,
                                                         "resp_headers": None, "body": None}}}),
    ("HTTPReqCallResp", {"id": 10, "action": {"rewrite": {"path": "", "headers": [], "args": [],
                                                          "resp_headers": [], "body": ""}}}),
    ("ExtraInfoReq", {"info": None}),
    ("ExtraInfoReq", {"info": {"var": "remote_addr"}}),
    ("ExtraInfoReq", {"info": {"var": uni}}),
    ("ExtraInfoReq", {"info": {"var": ""}}),
    ("ExtraInfoReq", {"info": {"var": None}}),
    ("ExtraInfoReq", {"info": {"req_body": {}}}),
    ("ExtraInfoReq", {"info": {"resp_body": {}}}),
    ("ExtraInfoResp", {"result": b64(uni.encode())}),
    ("ExtraInfoResp", {"result": ""}),
    ("ExtraInfoResp", {"result": None}),
    ("HTTPRespCallReq", {"id": 11, "status": 502, "headers": [E("content-type", "text/plain"), E("set-cookie", uni)],
                         "conf_token": 12}),
    ("HTTPRespCallReq", {"id": 0, "status": 0, "headers": [], "conf_token": 0}),
    ("HTTPRespCallReq", {"id": 13, "status": 200, "headers": None, "conf_token": 1}),
    ("HTTPRespCallResp", {"id": 14, "status": 201, "headers": [E("a", "b")], "body": b64(b"x" * 70000)}),
    ("HTTPRespCallResp", {"id": 0, "status": 0, "headers": [], "body": ""}),
    ("HTTPRespCallResp", {"id": 15, "status": 0, "headers": None, "body": None}),
    ("ErrResp", {"code": 0}),
    ("ErrResp", {"code": 1}),
    ("ErrResp", {"code": 2}),
]

failures = 0
encoded = run("encode", [{"type": t, "msg": m} for t, m in cases])
decoded = run("decode", [{"type": t, "bytes": e["bytes"]} for (t, _), e in zip(cases, encoded)])
for (t, m), e, d in zip(cases, encoded, decoded):
    if d != {"msg": m}:
        failures += 1
        print("ROUND TRIP FAIL", t, m, e, d, sep="\n  ")
seen = {t for t, _ in cases}
print("round trip: %d cases over %d types" % (len(cases), len(seen)))

# Absent vs empty and absent default scalars must differ on the wire, not only in JSON.
sizes = {json.dumps(m): len(base64.b64decode(e["bytes"])) for (_, m), e in zip(cases, encoded)}
assert sizes[json.dumps(cases[1][1])] > sizes[json.dumps(cases[2][1])], "empty vs absent not distinct"

# flatc reads our HTTPReqCallReq and HTTPReqCallResp(rewrite) as expected.
def flatc_json(root, raw):
    open("msg.bin", "wb").write(raw)
    subprocess.run(["flatc", "--json", "--strict-json", "--raw-binary", "--root-type", root,
                    schema, "--", "msg.bin"], check=True)
    return json.load(open("msg.json"))

got = flatc_json("A6.HTTPReqCall.Req", base64.b64decode(encoded[5]["bytes"]))
want = {"id": 1, "src_ip": [127, 0, 0, 1], "method": "TRACE", "path": "/" + uni,
        "args": [{"name": "a", "value": "1"}, {"name": "a", "value": "2"}, {"name": "flag"}],
        "headers": [{"name": "x-" + uni, "value": uni}], "conf_token": 9}
if got != want:
    failures += 1
    print("FLATC FAIL", got, want, sep="\n  ")
got = flatc_json("A6.HTTPReqCall.Resp", base64.b64decode(encoded[13]["bytes"]))
want = {"id": 8, "action_type": "Rewrite",
        "action": {"path": "/" + uni, "headers": [{"name": "host", "value": "h"}, {"name": "del"}],
                   "args": [{"name": "k", "value": uni}], "resp_headers": [{"name": "x-r", "value": "1"}],
                   "body": [0, 255, 16]}}
if got != want:
    failures += 1
    print("FLATC FAIL", got, want, sep="\n  ")
print("flatc agrees on 2 buffers")

# Undecodable input gives {"error"} per item, and the other items still decode.
err7 = run("encode", [{"type": "ErrResp", "msg": {"code": 7}}, {"type": "ErrResp", "msg": {"code": 1}}])
bad_utf8 = base64.b64decode(run("encode", [{"type": "ExtraInfoReq", "msg": {"info": {"var": "AB"}}}])[0]["bytes"])
bad_utf8 = bad_utf8.replace(b"AB\x00", b"\xff\xfe\x00")  # test-side patch only
bad = run("decode", [
    {"type": "ExtraInfoReq", "bytes": err7[0]["bytes"]},   # ubyte 7 in slot 0 = unknown Info tag
    {"type": "ExtraInfoReq", "bytes": err7[1]["bytes"]},   # tag Var but no table
    {"type": "ExtraInfoReq", "bytes": b64(bad_utf8)},
    {"type": "HTTPReqCallReq", "bytes": "AAA="},            # truncated
    {"type": "ErrResp", "bytes": err7[1]["bytes"]},
])
if not (all("error" in x for x in bad[:4]) and bad[4] == {"msg": {"code": 1}}):
    failures += 1
    print("ERROR PATH FAIL", bad)
print("error items:", [x.get("error") for x in bad[:4]])

sys.exit("FAILED: %d" % failures if failures else 0)
EOF
echo "selfcheck OK"
