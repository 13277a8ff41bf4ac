"""The reference codec of the APISIX ext-plugin messages, as an importable module.

Put GENDIR (the output of `flatc --python -o GENDIR ext-plugin.fbs`) on sys.path before
importing it. Only that generated code and flatbuffers.Builder touch the bytes: this is the
independent side of the wire-compatibility tests, so it must not share logic with the runner.
encode({"type": T, "msg": M}) -> {"bytes": base64}; decode({"type": T, "bytes": base64}) -> {"msg": M};
see README.md for the JSON shapes. fbcodec.py is the command line over it.
"""
import base64
import importlib

import flatbuffers


def gen(name):
    """The generated module A6.<name> (class + Start/AddXxx/End functions)."""
    return importlib.import_module("A6." + name)


TextEntry = gen("TextEntry")
ErrResp = gen("Err.Resp")
PrepReq, PrepResp = gen("PrepareConf.Req"), gen("PrepareConf.Resp")
ReqCallReq, ReqCallResp = gen("HTTPReqCall.Req"), gen("HTTPReqCall.Resp")
Stop, Rewrite, Action = gen("HTTPReqCall.Stop"), gen("HTTPReqCall.Rewrite"), gen("HTTPReqCall.Action").Action
InfoReq, InfoResp = gen("ExtraInfo.Req"), gen("ExtraInfo.Resp")
Var, ReqBody, RespBody, Info = (gen("ExtraInfo.Var"), gen("ExtraInfo.ReqBody"),
                                gen("ExtraInfo.RespBody"), gen("ExtraInfo.Info").Info)
RespCallReq, RespCallResp = gen("HTTPRespCall.Req"), gen("HTTPRespCall.Resp")


# ---------------------------------------------------------------- encoding
# Strings and vectors must be finished before the table that points at them is
# started, so each encoder first builds its children, then the table.
# None means "leave the field out"; add() skips it.

def string(b, s):
    # Encode ourselves: Builder.CreateString of a str advances by len(str), not by
    # the UTF-8 length; it only works out by accident, bytes avoid relying on it.
    return None if s is None else b.CreateString(s.encode("utf-8"))


def data(b, s):
    return None if s is None else b.CreateByteVector(base64.b64decode(s, validate=True))


def entries(b, items, start_vector):
    if items is None:
        return None
    offsets = []
    for e in items:
        name, value = string(b, e.get("name")), string(b, e.get("value"))
        TextEntry.Start(b)
        add(TextEntry.AddName, b, name)
        add(TextEntry.AddValue, b, value)
        offsets.append(TextEntry.End(b))
    start_vector(b, len(offsets))
    for off in reversed(offsets):  # the builder writes back to front
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def add(adder, b, off):
    if off is not None:
        adder(b, off)


def enc_prepare_conf_req(b, m):
    conf, key = entries(b, m.get("conf"), PrepReq.StartConfVector), string(b, m.get("key"))
    PrepReq.Start(b)
    add(PrepReq.AddConf, b, conf)
    add(PrepReq.AddKey, b, key)
    return PrepReq.End(b)


def enc_prepare_conf_resp(b, m):
    PrepResp.Start(b)
    PrepResp.AddConfToken(b, m.get("conf_token", 0))
    return PrepResp.End(b)


def enc_req_call_req(b, m):
    src_ip, path = data(b, m.get("src_ip")), string(b, m.get("path"))
    args = entries(b, m.get("args"), ReqCallReq.StartArgsVector)
    headers = entries(b, m.get("headers"), ReqCallReq.StartHeadersVector)
    ReqCallReq.Start(b)
    ReqCallReq.AddId(b, m.get("id", 0))
    add(ReqCallReq.AddSrcIp, b, src_ip)
    ReqCallReq.AddMethod(b, m.get("method", 0))
    add(ReqCallReq.AddPath, b, path)
    add(ReqCallReq.AddArgs, b, args)
    add(ReqCallReq.AddHeaders, b, headers)
    ReqCallReq.AddConfToken(b, m.get("conf_token", 0))
    return ReqCallReq.End(b)


def enc_stop(b, s):
    headers = entries(b, s.get("headers"), Stop.StartHeadersVector)
    body = data(b, s.get("body"))
    Stop.Start(b)
    Stop.AddStatus(b, s.get("status", 0))
    add(Stop.AddHeaders, b, headers)
    add(Stop.AddBody, b, body)
    return Stop.End(b)


def enc_rewrite(b, r):
    path = string(b, r.get("path"))
    headers = entries(b, r.get("headers"), Rewrite.StartHeadersVector)
    args = entries(b, r.get("args"), Rewrite.StartArgsVector)
    resp_headers = entries(b, r.get("resp_headers"), Rewrite.StartRespHeadersVector)
    body = data(b, r.get("body"))
    Rewrite.Start(b)
    add(Rewrite.AddPath, b, path)
    add(Rewrite.AddHeaders, b, headers)
    add(Rewrite.AddArgs, b, args)
    add(Rewrite.AddRespHeaders, b, resp_headers)
    add(Rewrite.AddBody, b, body)
    return Rewrite.End(b)


def enc_union(b, value, members):
    """(tag, offset) for a union given as null or {"member": {...}}."""
    if value is None:
        return 0, None
    (name, body), = value.items()
    tag, encoder = members[name]
    return tag, encoder(b, body)


def enc_req_call_resp(b, m):
    tag, action = enc_union(b, m.get("action"), {"stop": (Action.Stop, enc_stop),
                                                 "rewrite": (Action.Rewrite, enc_rewrite)})
    ReqCallResp.Start(b)
    ReqCallResp.AddId(b, m.get("id", 0))
    ReqCallResp.AddActionType(b, tag)
    add(ReqCallResp.AddAction, b, action)
    return ReqCallResp.End(b)


def enc_var(b, var_name):
    name = string(b, var_name)
    Var.Start(b)
    add(Var.AddName, b, name)
    return Var.End(b)


def enc_empty(module):
    def enc(b, _):
        module.Start(b)
        return module.End(b)
    return enc


def enc_extra_info_req(b, m):
    tag, off = enc_union(b, m.get("info"), {"var": (Info.Var, enc_var),
                                            "req_body": (Info.ReqBody, enc_empty(ReqBody)),
                                            "resp_body": (Info.RespBody, enc_empty(RespBody))})
    InfoReq.Start(b)
    InfoReq.AddInfoType(b, tag)
    add(InfoReq.AddInfo, b, off)
    return InfoReq.End(b)


def enc_extra_info_resp(b, m):
    result = data(b, m.get("result"))
    InfoResp.Start(b)
    add(InfoResp.AddResult, b, result)
    return InfoResp.End(b)


def enc_resp_call_req(b, m):
    headers = entries(b, m.get("headers"), RespCallReq.StartHeadersVector)
    RespCallReq.Start(b)
    RespCallReq.AddId(b, m.get("id", 0))
    RespCallReq.AddStatus(b, m.get("status", 0))
    add(RespCallReq.AddHeaders, b, headers)
    RespCallReq.AddConfToken(b, m.get("conf_token", 0))
    return RespCallReq.End(b)


def enc_resp_call_resp(b, m):
    headers = entries(b, m.get("headers"), RespCallResp.StartHeadersVector)
    body = data(b, m.get("body"))
    RespCallResp.Start(b)
    RespCallResp.AddId(b, m.get("id", 0))
    RespCallResp.AddStatus(b, m.get("status", 0))
    add(RespCallResp.AddHeaders, b, headers)
    add(RespCallResp.AddBody, b, body)
    return RespCallResp.End(b)


def enc_err_resp(b, m):
    ErrResp.Start(b)
    ErrResp.AddCode(b, m.get("code", 0))
    return ErrResp.End(b)


# ---------------------------------------------------------------- decoding
# Generated accessors: Xxx() for scalars/strings (strings come back as bytes or
# None), Xxx(j) / XxxLength() / XxxIsNone() for vectors.

def text(s):
    return None if s is None else s.decode("utf-8")  # strict: bad UTF-8 -> error item


def dec_data(obj, field):
    if getattr(obj, field + "IsNone")():
        return None
    get = getattr(obj, field)
    raw = bytes(get(j) for j in range(getattr(obj, field + "Length")()))
    return base64.b64encode(raw).decode("ascii")


def dec_entries(obj, field):
    if getattr(obj, field + "IsNone")():
        return None
    get = getattr(obj, field)
    return [{"name": text(e.Name()), "value": text(e.Value())}
            for e in (get(j) for j in range(getattr(obj, field + "Length")()))]


def dec_union(tag, table, members):
    """Report a union as null or {"member": decoded}; members maps tag -> (name, class, decoder)."""
    if tag == 0:
        return None
    if tag not in members:
        raise ValueError("unknown union tag %d" % tag)
    if table is None:
        raise ValueError("union tag %d without a value" % tag)
    name, cls, decoder = members[tag]
    member = cls()
    member.Init(table.Bytes, table.Pos)
    return {name: decoder(member)}


def dec_prepare_conf_req(r):
    return {"conf": dec_entries(r, "Conf"), "key": text(r.Key())}


def dec_prepare_conf_resp(r):
    return {"conf_token": r.ConfToken()}


def dec_req_call_req(r):
    return {"id": r.Id(), "src_ip": dec_data(r, "SrcIp"), "method": r.Method(), "path": text(r.Path()),
            "args": dec_entries(r, "Args"), "headers": dec_entries(r, "Headers"),
            "conf_token": r.ConfToken()}


def dec_stop(s):
    return {"status": s.Status(), "headers": dec_entries(s, "Headers"), "body": dec_data(s, "Body")}


def dec_rewrite(w):
    return {"path": text(w.Path()), "headers": dec_entries(w, "Headers"), "args": dec_entries(w, "Args"),
            "resp_headers": dec_entries(w, "RespHeaders"), "body": dec_data(w, "Body")}


def dec_req_call_resp(r):
    return {"id": r.Id(),
            "action": dec_union(r.ActionType(), r.Action(),
                                {Action.Stop: ("stop", Stop.Stop, dec_stop),
                                 Action.Rewrite: ("rewrite", Rewrite.Rewrite, dec_rewrite)})}


def dec_extra_info_req(r):
    info = dec_union(r.InfoType(), r.Info(),
                     {Info.Var: ("var", Var.Var, lambda v: text(v.Name())),
                      Info.ReqBody: ("req_body", ReqBody.ReqBody, lambda _: {}),
                      Info.RespBody: ("resp_body", RespBody.RespBody, lambda _: {})})
    return {"info": info}


def dec_extra_info_resp(r):
    return {"result": dec_data(r, "Result")}


def dec_resp_call_req(r):
    return {"id": r.Id(), "status": r.Status(), "headers": dec_entries(r, "Headers"),
            "conf_token": r.ConfToken()}


def dec_resp_call_resp(r):
    return {"id": r.Id(), "status": r.Status(), "headers": dec_entries(r, "Headers"),
            "body": dec_data(r, "Body")}


def dec_err_resp(r):
    return {"code": r.Code()}


# type name -> (root class, encoder, decoder)
MESSAGES = {
    "PrepareConfReq": (PrepReq.Req, enc_prepare_conf_req, dec_prepare_conf_req),
    "PrepareConfResp": (PrepResp.Resp, enc_prepare_conf_resp, dec_prepare_conf_resp),
    "HTTPReqCallReq": (ReqCallReq.Req, enc_req_call_req, dec_req_call_req),
    "HTTPReqCallResp": (ReqCallResp.Resp, enc_req_call_resp, dec_req_call_resp),
    "ExtraInfoReq": (InfoReq.Req, enc_extra_info_req, dec_extra_info_req),
    "ExtraInfoResp": (InfoResp.Resp, enc_extra_info_resp, dec_extra_info_resp),
    "HTTPRespCallReq": (RespCallReq.Req, enc_resp_call_req, dec_resp_call_req),
    "HTTPRespCallResp": (RespCallResp.Resp, enc_resp_call_resp, dec_resp_call_resp),
    "ErrResp": (ErrResp.Resp, enc_err_resp, dec_err_resp),
}


def encode(item):
    b = flatbuffers.Builder(0)
    b.Finish(MESSAGES[item["type"]][1](b, item["msg"]))
    return {"bytes": base64.b64encode(b.Output()).decode("ascii")}


def decode(item):
    root, _, decoder = MESSAGES[item["type"]]
    buf = bytearray(base64.b64decode(item["bytes"], validate=True))
    return {"msg": decoder(root.GetRootAs(buf, 0))}
