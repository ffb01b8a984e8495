// The etcd client against a real etcd (Debian's etcd-server) on 127.0.0.1.
#include "updater/fleet/etcd_client.h"

#include <catch2/catch.hpp>
#include <thread>

#include "base/error.h"
#include "tests/support/etcd_server.h"
#include "tests/support/nginx_server.h"

using namespace osup;
using namespace osup::fleet;
using Catch::Matchers::Contains;

TEST_CASE("etcd client: put, get, prefix range, transactions, history", "[integration]") {
  test::EtcdCluster etcd(1);
  EtcdClient c({etcd.endpoints(), {}});
  const int64_t r1 = c.put("/t/a", "one");
  c.put("/t/b", std::string("bin\0ary\xff", 8));
  c.put("/u/c", "other prefix");
  CHECK(c.get("/t/a")->value == "one");
  CHECK(c.get("/t/b")->value == std::string("bin\0ary\xff", 8));
  CHECK_FALSE(c.get("/t/none"));
  const auto kvs = c.range_prefix("/t/");
  REQUIRE(kvs.size() == 2);
  CHECK(kvs[0].key == "/t/a");
  CHECK(kvs[0].create_revision == r1);

  // Put only while absent: the second one loses.
  CHECK(c.txn({{EtcdCompare::What::absent, "/t/new", ""}}, {{false, "/t/new", "first", 0}}));
  CHECK_FALSE(c.txn({{EtcdCompare::What::absent, "/t/new", ""}}, {{false, "/t/new", "second", 0}}));
  CHECK(c.get("/t/new")->value == "first");
  // Delete only while the value is ours.
  CHECK_FALSE(c.txn({{EtcdCompare::What::value_equals, "/t/new", "x"}}, {{true, "/t/new", "", 0}}));
  CHECK(c.txn({{EtcdCompare::What::value_equals, "/t/new", "first"}}, {{true, "/t/new", "", 0}}));
  CHECK_FALSE(c.get("/t/new"));

  const int64_t end = c.put("/t/~end", "");
  const auto events = c.history("/t/", 1, end);
  REQUIRE(events.size() == 5);  // a, b, new put, new delete, ~end
  CHECK(events[2].kv.key == "/t/new");
  CHECK(events[3].deleted);
  CHECK(events[4].kv.mod_revision == end);
  CHECK(c.requests() > 10);
}

TEST_CASE("etcd client: a lease ends and takes its keys; keepalive extends it", "[integration]") {
  test::EtcdCluster etcd(1);
  EtcdClient c({etcd.endpoints(), {}});
  const int64_t kept = c.grant_lease(2), dropped = c.grant_lease(2);
  c.put("/l/kept", "k", kept);
  c.put("/l/dropped", "d", dropped);
  for (int i = 0; i < 8; ++i) {  // 4 s, twice the TTL
    CHECK(c.keep_alive(kept) > 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  CHECK(c.get("/l/kept"));
  CHECK_FALSE(c.get("/l/dropped"));
  CHECK(c.keep_alive(dropped) == 0);
  c.revoke(kept);
  CHECK_FALSE(c.get("/l/kept"));
  c.revoke(kept);  // twice is fine
}

TEST_CASE("etcd client: fails over to the next member, one line when none answers",
          "[integration]") {
  test::EtcdCluster etcd(3);
  EtcdClient c({etcd.endpoints(), {}});
  c.put("/f/x", "1");
  etcd.kill(0);
  c.put("/f/y", "2");  // member 0 is passed over
  CHECK(c.get("/f/x")->value == "1");
  EtcdClient none({{"http://127.0.0.1:" + std::to_string(test::closed_port())}, {}});
  CHECK_THROWS_WITH(none.put("/f/z", "3"),
                    Contains("etcd unreachable") && Contains("is etcd running at the endpoints"));
  CHECK_THROWS_WITH(EtcdClient({{}, {}}), Contains("no endpoints"));
}

TEST_CASE("etcd client: a server that is not etcd is named", "[integration]") {
  test::TempDir root;
  test::NginxServer nginx(root.path(), {false, true, {{"/v3/", "return 200 'hello';"}}});
  EtcdClient c({{nginx.url("")}, {}});
  CHECK_THROWS_WITH(c.put("/a", "b"), Contains("is this an etcd v3 endpoint?"));
}

TEST_CASE("etcd client: TLS with a client certificate, as update.conf's etcd_* keys set it",
          "[integration]") {
  test::EtcdCluster etcd(1, true);
  const test::EtcdTls t = etcd.tls();
  HttpOptions h;
  h.ca_file = t.ca;
  h.client_cert = t.client_cert;
  h.client_key = t.client_key;
  EtcdClient c({etcd.endpoints(), h});
  CHECK(etcd.endpoint(0).rfind("https://", 0) == 0);
  c.put("/tls/a", "1");
  CHECK(c.get("/tls/a")->value == "1");

  HttpOptions no_cert;  // the server wants a client certificate
  no_cert.ca_file = t.ca;
  EtcdClient anonymous({etcd.endpoints(), no_cert});
  CHECK_THROWS(anonymous.put("/tls/b", "2"));
  EtcdClient untrusting({etcd.endpoints(), {}});  // the system's CAs do not know the test CA
  CHECK_THROWS_WITH(untrusting.put("/tls/b", "2"), Contains("TLS certificate not trusted"));
}
