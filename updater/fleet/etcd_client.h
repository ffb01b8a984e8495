// etcd v3 through its JSON gateway (etcd 3.4's /v3/...), over libcurl: key ranges, puts,
// transactions, leases and a watch for reading history. Keys and values are plain
// strings here (base64 is the gateway's business, done inside). Several endpoints (the
// members of a cluster) are tried in turn: a member that does not answer or answers 5xx
// is passed over and the next one is asked; the one that answered is asked first next
// time. Every call is one attempt across the members; waiting and retrying is the
// caller's choice (a machine waiting for a reboot slot retries, `fleet status` does not).
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "updater/http.h"

namespace osup::fleet {

struct EtcdOptions {
  std::vector<std::string> endpoints;  // "http://127.0.0.1:2379", "https://etcd1:2379"
  HttpOptions http;                    // CA, client certificate, timeouts
};

struct EtcdKv {
  std::string key, value;
  int64_t create_revision = 0, mod_revision = 0, version = 0, lease = 0;
};

// One change from a watch: a put (kv is the new value) or a delete (kv.key, mod_revision).
struct EtcdEvent {
  bool deleted = false;
  EtcdKv kv;
};

// A condition of a transaction on one key.
struct EtcdCompare {
  enum class What { absent, value_equals } what = What::absent;
  std::string key, value;
};

// One operation of a transaction: a put (with a lease, or 0) or a delete.
struct EtcdOp {
  bool del = false;
  std::string key, value;
  int64_t lease = 0;
};

class EtcdClient {
 public:
  explicit EtcdClient(EtcdOptions o);

  // Every key that starts with prefix, sorted by key; revision (optional) gets the
  // store's revision the answer reflects.
  [[nodiscard]] std::vector<EtcdKv> range_prefix(const std::string& prefix,
                                                 int64_t* revision = nullptr);
  [[nodiscard]] std::optional<EtcdKv> get(const std::string& key);
  // Returns the revision of the put.
  int64_t put(const std::string& key, const std::string& value, int64_t lease = 0);
  // All compares hold: the success ops run, and true. Otherwise nothing changes.
  bool txn(const std::vector<EtcdCompare>& compares, const std::vector<EtcdOp>& success);

  [[nodiscard]] int64_t grant_lease(int64_t ttl_seconds);
  // The lease's remaining TTL after the refresh; 0 when it has expired (or never was).
  int64_t keep_alive(int64_t lease);
  void revoke(int64_t lease);

  // Every change under prefix from revision `from` to `until` (inclusive), oldest first,
  // read through a watch (the history etcd keeps until it is compacted). `until` must be
  // the revision of a change under prefix (put a marker key first): the watch ends there.
  [[nodiscard]] std::vector<EtcdEvent> history(const std::string& prefix, int64_t from,
                                               int64_t until);

  // Requests sent so far by this client (for the simulation's request rate).
  [[nodiscard]] uint64_t requests() const { return requests_.load(); }
  [[nodiscard]] const std::vector<std::string>& endpoints() const { return o_.endpoints; }

 private:
  std::string call(const std::string& path, const std::string& body);
  EtcdOptions o_;
  std::atomic<size_t> preferred_ = 0;
  std::atomic<uint64_t> requests_ = 0;
};

// The key after every key with this prefix (etcd's range_end for a prefix).
[[nodiscard]] std::string prefix_end(const std::string& prefix);

}  // namespace osup::fleet
