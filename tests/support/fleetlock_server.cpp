#include "tests/support/fleetlock_server.h"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/fd.h"

using nlohmann::json;

namespace osup::test {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string reply(int status, const std::string& reason, const std::string& body) {
  return "HTTP/1.1 " + std::to_string(status) + " " + reason +
         "\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

std::string error_reply(int status, const std::string& kind, const std::string& value) {
  return reply(status, status == 409 ? "Conflict" : "Bad Request",
               json{{"kind", kind}, {"value", value}}.dump());
}

// Reads one request (headers and a Content-Length body).
std::string read_request(int fd) {
  std::string got;
  char buf[4096];
  for (;;) {
    const size_t end = got.find("\r\n\r\n");
    if (end != std::string::npos) {
      const std::string head = lower(got.substr(0, end));
      size_t len = 0;
      if (auto p = head.find("content-length:"); p != std::string::npos)
        len = std::stoul(head.substr(p + 15));
      if (got.size() >= end + 4 + len) return got;
    }
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 5000) <= 0) return got;
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return got;
    got.append(buf, static_cast<size_t>(n));
  }
}

}  // namespace

FleetLockServer::FleetLockServer(int slots)
    : slots_(slots),
      acceptor_("FleetLock test server", [this](UniqueFd c) { serve(std::move(c)); }) {}

std::string FleetLockServer::url() const {
  return "http://127.0.0.1:" + std::to_string(acceptor_.port());
}

std::set<std::string> FleetLockServer::holders(const std::string& group) const {
  std::lock_guard lock(m_);
  auto it = held_.find(group);
  return it == held_.end() ? std::set<std::string>{} : it->second;
}

void FleetLockServer::serve(UniqueFd client) {
  const std::string out = answer(read_request(client.get()));
  (void)!::write(client.get(), out.data(), out.size());
}

std::string FleetLockServer::answer(const std::string& request) {
  const size_t end = request.find("\r\n\r\n");
  const std::string head = lower(request.substr(0, end));
  const bool pre = head.rfind("post /v1/pre-reboot ", 0) == 0;
  const bool steady = head.rfind("post /v1/steady-state ", 0) == 0;
  if (!pre && !steady) return ++bad_, reply(404, "Not Found", "{}");
  if (head.find("\r\nfleet-lock-protocol: true") == std::string::npos)
    return ++bad_, error_reply(400, "missing_header", "fleet-lock-protocol: true is required");
  std::string id, group;
  try {
    const json b = json::parse(request.substr(end + 4)).at("client_params");
    id = b.at("node_uuid").get<std::string>();
    group = b.at("group").get<std::string>();
  } catch (const json::exception& e) {
    return ++bad_, error_reply(400, "bad_body", e.what());
  }
  std::lock_guard lock(m_);
  std::set<std::string>& held = held_[group];
  if (steady) {
    held.erase(id);
    return reply(200, "OK", "{}");
  }
  if (held.count(id) || static_cast<int>(held.size()) < slots_) {
    held.insert(id);
    return reply(200, "OK", "{}");
  }
  return error_reply(409, "failed_lock", "all " + std::to_string(slots_) + " slots are held");
}

}  // namespace osup::test
