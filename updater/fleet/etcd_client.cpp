#include "updater/fleet/etcd_client.h"

#include <openssl/evp.h>

#include <nlohmann/json.hpp>

#include "base/error.h"

using nlohmann::json;

namespace osup::fleet {
namespace {

std::string b64(const std::string& s) {
  std::string out(4 * ((s.size() + 2) / 3) + 1, '\0');
  const int n =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(s.data()), static_cast<int>(s.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::string unb64(const std::string& s) {
  if (s.empty()) return "";
  std::string out(3 * (s.size() / 4) + 3, '\0');
  const int n =
      EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(s.data()), static_cast<int>(s.size()));
  if (n < 0) fail("etcd sent a value that is not base64");
  size_t pad = 0;  // EVP_DecodeBlock counts the padding as zero bytes
  for (size_t i = s.size(); i > 0 && s[i - 1] == '='; --i) ++pad;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

// The gateway writes 64-bit numbers as strings and leaves out zeros and falses.
int64_t num(const json& j, const char* field) {
  auto it = j.find(field);
  if (it == j.end()) return 0;
  if (it->is_string()) return std::stoll(it->get<std::string>());
  return it->get<int64_t>();
}

EtcdKv parse_kv(const json& j) {
  EtcdKv kv;
  kv.key = unb64(j.value("key", ""));
  kv.value = unb64(j.value("value", ""));
  kv.create_revision = num(j, "create_revision");
  kv.mod_revision = num(j, "mod_revision");
  kv.version = num(j, "version");
  kv.lease = num(j, "lease");
  return kv;
}

json compare_json(const EtcdCompare& c) {
  if (c.what == EtcdCompare::What::absent)
    return {
        {"key", b64(c.key)}, {"target", "CREATE"}, {"result", "EQUAL"}, {"create_revision", "0"}};
  return {{"key", b64(c.key)}, {"target", "VALUE"}, {"result", "EQUAL"}, {"value", b64(c.value)}};
}

json op_json(const EtcdOp& op) {
  if (op.del) return {{"request_delete_range", {{"key", b64(op.key)}}}};
  json put{{"key", b64(op.key)}, {"value", b64(op.value)}};
  if (op.lease) put["lease"] = std::to_string(op.lease);
  return {{"request_put", put}};
}

json parse_answer(const std::string& body, const std::string& what) {
  try {
    return json::parse(body);
  } catch (const json::exception&) {
    fail(what + ": the answer is not JSON; is this an etcd v3 endpoint?");
  }
}

}  // namespace

std::string prefix_end(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    auto& c = reinterpret_cast<unsigned char&>(end.back());
    if (c < 0xff) {
      ++c;
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

EtcdClient::EtcdClient(EtcdOptions o) : o_(std::move(o)) {
  if (o_.endpoints.empty()) fail("etcd: no endpoints; set 'endpoints = URL,...' in update.conf");
  if (o_.http.connect_timeout_s > 5) o_.http.connect_timeout_s = 5;
  if (o_.http.timeout_s == 0) o_.http.timeout_s = 15;
}

// One request to the first member that answers; the next ones when it does not.
std::string EtcdClient::call(const std::string& path, const std::string& body) {
  const size_t n = o_.endpoints.size(), first = preferred_.load() % n;
  std::string errors;
  for (size_t k = 0; k < n; ++k) {
    const size_t i = (first + k) % n;
    std::string url = o_.endpoints[i];
    while (!url.empty() && url.back() == '/') url.pop_back();
    ++requests_;
    // What a retry cannot fix (TLS trust, a bad certificate file) is thrown at once.
    const HttpPostResult r =
        with_context("etcd (etcd_ca, etcd_cert, etcd_key in update.conf)", [&] {
          return http_post_once(url + path, body, {"Content-Type: application/json"}, 16u << 20,
                                o_.http);
        });
    if (r.ok) {
      preferred_.store(i);
      return r.body;
    }
    if (r.status >= 400 && r.status < 500 && r.status != 408 && r.status != 429) {
      std::string msg = r.error;
      try {
        msg = "etcd " + url + path + ": " + json::parse(r.body).value("message", r.error);
      } catch (const json::exception&) {
      }
      fail(msg);
    }
    errors += (errors.empty() ? "" : "; ") + r.error;
  }
  fail("etcd unreachable (" + errors + "); is etcd running at the endpoints in update.conf?");
}

std::vector<EtcdKv> EtcdClient::range_prefix(const std::string& prefix, int64_t* revision) {
  const json a =
      parse_answer(call("/v3/kv/range",
                        json{{"key", b64(prefix)}, {"range_end", b64(prefix_end(prefix))}}.dump()),
                   "etcd range");
  if (revision) *revision = num(a.value("header", json::object()), "revision");
  std::vector<EtcdKv> out;
  for (const json& kv : a.value("kvs", json::array())) out.push_back(parse_kv(kv));
  return out;
}

std::optional<EtcdKv> EtcdClient::get(const std::string& key) {
  const json a = parse_answer(call("/v3/kv/range", json{{"key", b64(key)}}.dump()), "etcd get");
  const json kvs = a.value("kvs", json::array());
  if (kvs.empty()) return std::nullopt;
  return parse_kv(kvs[0]);
}

int64_t EtcdClient::put(const std::string& key, const std::string& value, int64_t lease) {
  json req{{"key", b64(key)}, {"value", b64(value)}};
  if (lease) req["lease"] = std::to_string(lease);
  const json a = parse_answer(call("/v3/kv/put", req.dump()), "etcd put");
  return num(a.value("header", json::object()), "revision");
}

bool EtcdClient::txn(const std::vector<EtcdCompare>& compares, const std::vector<EtcdOp>& success) {
  json req{{"compare", json::array()}, {"success", json::array()}};
  for (const EtcdCompare& c : compares) req["compare"].push_back(compare_json(c));
  for (const EtcdOp& op : success) req["success"].push_back(op_json(op));
  const json a = parse_answer(call("/v3/kv/txn", req.dump()), "etcd txn");
  return a.value("succeeded", false);
}

int64_t EtcdClient::grant_lease(int64_t ttl_seconds) {
  const json a =
      parse_answer(call("/v3/lease/grant", json{{"TTL", ttl_seconds}}.dump()), "etcd lease grant");
  if (a.contains("error") && !a["error"].get<std::string>().empty())
    fail("etcd lease grant: " + a["error"].get<std::string>());
  const int64_t id = num(a, "ID");
  if (id == 0) fail("etcd lease grant: no lease in the answer");
  return id;
}

int64_t EtcdClient::keep_alive(int64_t lease) {
  const json a = parse_answer(
      call("/v3/lease/keepalive", json{{"ID", std::to_string(lease)}}.dump()), "etcd keepalive");
  return num(a.value("result", json::object()), "TTL");
}

void EtcdClient::revoke(int64_t lease) {
  try {
    (void)call("/v3/lease/revoke", json{{"ID", std::to_string(lease)}}.dump());
  } catch (const Error& e) {
    // Already gone (expired, or revoked by an earlier attempt) is what revoke wants.
    if (std::string(e.what()).find("lease not found") == std::string::npos) throw;
  }
}

std::vector<EtcdEvent> EtcdClient::history(const std::string& prefix, int64_t from, int64_t until) {
  const json req{{"create_request",
                  {{"key", b64(prefix)},
                   {"range_end", b64(prefix_end(prefix))},
                   {"start_revision", std::to_string(from)}}}};
  std::vector<EtcdEvent> out;
  std::string buf;
  HttpOptions h = o_.http;
  h.timeout_s = 300;
  bool done = from > until;
  auto on_data = [&](std::string_view piece) {
    buf.append(piece);
    for (size_t nl; !done && (nl = buf.find('\n')) != std::string::npos; buf.erase(0, nl + 1)) {
      const json m = parse_answer(buf.substr(0, nl), "etcd watch").value("result", json::object());
      for (const json& e : m.value("events", json::array())) {
        EtcdEvent ev{e.value("type", "") == "DELETE", parse_kv(e.value("kv", json::object()))};
        done = ev.kv.mod_revision >= until;
        if (ev.kv.mod_revision <= until) out.push_back(std::move(ev));
        if (done) break;
      }
    }
    return !done;
  };
  std::string url = o_.endpoints[preferred_.load() % o_.endpoints.size()];
  while (!url.empty() && url.back() == '/') url.pop_back();
  if (!done)
    http_post_stream(url + "/v3/watch", req.dump(), {"Content-Type: application/json"}, h, on_data);
  if (!done) fail("etcd watch on " + url + " ended before revision " + std::to_string(until));
  return out;
}

}  // namespace osup::fleet
