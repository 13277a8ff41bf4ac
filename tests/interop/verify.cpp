// The C++ reference Verifier (flatbuffers 2.0.8, alignment checks on) over bodies named on stdin,
// one "Type path" pair a line, Type as fbcodec.py names it. Prints "rejected Type path" for each
// body it rejects and a last line "checked rejected"; exits 1 only when a file cannot be read.
// Built by the interop tests from the code `flatc --cpp ext-plugin.fbs` generates (needs
// libflatbuffers-dev and g++).
#include "ext-plugin_generated.h"

#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

template <class Root> static bool verify(const std::vector<uint8_t> &body) {
  flatbuffers::Verifier v(body.data(), body.size());
  return v.VerifyBuffer<Root>(nullptr);
}

static bool verify(const std::string &type, const std::vector<uint8_t> &b) {
  if (type == "PrepareConfReq") return verify<A6::PrepareConf::Req>(b);
  if (type == "PrepareConfResp") return verify<A6::PrepareConf::Resp>(b);
  if (type == "HTTPReqCallReq") return verify<A6::HTTPReqCall::Req>(b);
  if (type == "HTTPReqCallResp") return verify<A6::HTTPReqCall::Resp>(b);
  if (type == "ExtraInfoReq") return verify<A6::ExtraInfo::Req>(b);
  if (type == "ExtraInfoResp") return verify<A6::ExtraInfo::Resp>(b);
  if (type == "HTTPRespCallReq") return verify<A6::HTTPRespCall::Req>(b);
  if (type == "HTTPRespCallResp") return verify<A6::HTTPRespCall::Resp>(b);
  if (type == "ErrResp") return verify<A6::Err::Resp>(b);
  return false;
}

int main() {
  std::string type, path;
  long checked = 0, rejected = 0;
  while (std::cin >> type >> path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) {
      std::cerr << "cannot read " << path << "\n";
      return 1;
    }
    std::vector<uint8_t> body((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    checked++;
    if (!verify(type, body)) {
      rejected++;
      std::cout << "rejected " << type << " " << path << "\n";
    }
  }
  std::cout << checked << " " << rejected << "\n";
  return 0;
}
