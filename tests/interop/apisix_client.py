#!/usr/bin/python3
"""Plays APISIX against a runner's unix socket, encoding and decoding with the flatc-generated
code only (through a6codec), so it shares nothing with the runner under test.

Usage: /usr/bin/python3 apisix_client.py GENDIR < scenario.json > results.json

GENDIR holds the output of `flatc --python -o GENDIR ext-plugin.fbs`. The scenario is
{"socket": path, "timeout": seconds (default 10), "steps": [step, ...]}; every step runs on one
connection, in order. Messages M and TextEntries are the JSON shapes of README.md.

  {"prepare": {"conf": [TE], "key": str|null}, "as": NAME}
      PrepareConf; the token of a PrepareConfResp is remembered under NAME.
  {"call": "HTTPReqCallReq"|"HTTPRespCallReq", "msg": M, "token": NAME,
   "extra_info": {KEY: b64|null}, "pipelined": N}
      A call with M's conf_token replaced by the token remembered under NAME (kept when there
      is no "token"). Every ExtraInfo request (type 3) is answered from extra_info, KEY being
      "var:NAME", "req_body" or "resp_body"; null or a missing key is answered as absent.
      With "pipelined": N the first N ExtraInfo requests must all arrive before any is answered,
      as they do from a runner that asks for everything at once.
  {"raw": b64}
      Sends the bytes as they are, then reads one answer frame.
  {"expect_close": true}
      Reads once more: the runner must have closed the connection.

One JSON result per step, in order:
  {"type": frame type, "msg": decoded answer, "extra_info": [ExtraInfo requests, in order]}
      (extra_info only for calls);
  {"closed": true} or {"closed": false, "type": ..., "msg": ...} for expect_close;
  {"error": text} when the step could not be played; the connection's state is then unknown,
      so the steps after it are not played and report {"error": "skipped ..."}.
"""
import base64
import json
import socket
import sys

if len(sys.argv) != 2:
    sys.exit("usage: apisix_client.py GENDIR < scenario.json")
sys.path.insert(0, sys.argv[1])

import a6codec  # noqa: E402 -- needs GENDIR on sys.path first

PREPARE_CONF, HTTP_REQ_CALL, EXTRA_INFO, HTTP_RESP_CALL = 1, 2, 3, 4
CALL_FRAME = {"HTTPReqCallReq": HTTP_REQ_CALL, "HTTPRespCallReq": HTTP_RESP_CALL}
# What a frame from the runner holds, by its type byte.
ANSWER = {0: "ErrResp", 1: "PrepareConfResp", 2: "HTTPReqCallResp", 3: "ExtraInfoReq", 4: "HTTPRespCallResp"}


class Closed(Exception):
    """The runner closed the connection."""


def encode(type_name, msg):
    return base64.b64decode(a6codec.encode({"type": type_name, "msg": msg})["bytes"])


def decode(frame_type, body):
    if frame_type not in ANSWER:
        raise ValueError("frame type %d is not one the runner sends" % frame_type)
    item = {"type": ANSWER[frame_type], "bytes": base64.b64encode(body).decode("ascii")}
    return a6codec.decode(item)["msg"]


def send(sock, frame_type, body):
    sock.sendall(bytes([frame_type]) + len(body).to_bytes(3, "big") + body)


def recv_exact(sock, n):
    """Exactly n bytes, however many reads that takes (frames can be up to 16 MiB)."""
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = sock.recv(min(n - len(buf), 1 << 20))
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise Closed("the runner closed the connection after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def read_frame(sock):
    header = recv_exact(sock, 4)
    return header[0], recv_exact(sock, int.from_bytes(header[1:], "big"))


def answer(frame):
    frame_type, body = frame
    return {"type": frame_type, "msg": decode(frame_type, body)}


def info_key(info):
    """The extra_info key that answers a decoded ExtraInfo request."""
    if info is None:
        return "none"
    (kind, value), = info.items()
    return "var:" + value if kind == "var" else kind


def prepare(sock, step, tokens):
    send(sock, PREPARE_CONF, encode("PrepareConfReq", step["prepare"]))
    result = answer(read_frame(sock))
    if result["type"] == PREPARE_CONF and "as" in step:
        tokens[step["as"]] = result["msg"]["conf_token"]
    return result


def call(sock, step, tokens):
    msg = dict(step["msg"])
    if "token" in step:
        msg["conf_token"] = tokens[step["token"]]
    send(sock, CALL_FRAME[step["call"]], encode(step["call"], msg))
    table = step.get("extra_info", {})
    held = []
    try:
        while len(held) < step.get("pipelined", 0):
            held.append(read_frame(sock))
    except socket.timeout:
        raise RuntimeError("only %d of %d ExtraInfo requests arrived before any reply"
                           % (len(held), step["pipelined"])) from None
    asked = []
    while True:
        frame_type, body = held.pop(0) if held else read_frame(sock)
        if frame_type != EXTRA_INFO:
            if held:
                raise RuntimeError("the answer came before %d held ExtraInfo requests" % len(held))
            return dict(answer((frame_type, body)), extra_info=asked)
        info = decode(EXTRA_INFO, body)["info"]
        asked.append(info)
        send(sock, EXTRA_INFO, encode("ExtraInfoResp", {"result": table.get(info_key(info))}))


def raw(sock, step, _):
    sock.sendall(base64.b64decode(step["raw"], validate=True))
    return answer(read_frame(sock))


def expect_close(sock, _, __):
    try:
        return dict(answer(read_frame(sock)), closed=False)
    except Closed:
        return {"closed": True}


def play(step):
    for kind, player in (("prepare", prepare), ("call", call), ("raw", raw), ("expect_close", expect_close)):
        if kind in step:
            return player
    raise ValueError("unknown step %s" % json.dumps(step))


def main():
    scenario = json.loads(sys.stdin.buffer.read())
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(scenario.get("timeout", 10))
    sock.connect(scenario["socket"])
    tokens, results = {}, []
    for step in scenario["steps"]:
        if results and "error" in results[-1]:
            results.append({"error": "skipped after an earlier error"})
            continue
        try:
            results.append(play(step)(sock, step, tokens))
        except Exception as e:  # report it as this step's result: the test names the step that failed
            results.append({"error": "%s: %s" % (type(e).__name__, e)})
    sock.close()
    sys.stdout.write(json.dumps(results) + "\n")


main()
