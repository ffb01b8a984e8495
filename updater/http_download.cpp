// download_to_file (http.h): a resumable download checked against a signed index.
#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <vector>

#include "base/error.h"
#include "base/fd.h"
#include "base/size.h"
#include "format/sha256.h"
#include "updater/http.h"
#include "updater/http_transfer.h"

namespace osup {

namespace {

constexpr uint64_t kSyncEvery = 8 * MiB;

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The file being downloaded: what is in it so far (have()), hashed once.
class FileSink final : public http_detail::BodySink {
 public:
  FileSink(const std::string& url, const std::string& path, const DownloadExpect& e,
           Progress* progress)
      : url_(url),
        path_(path),
        e_(e),
        progress_(progress),
        fd_(open_file(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) {
    have_ = fd_size(fd_.get(), path_);
    if (have_ > e_.size) truncate_all();  // not a prefix of this file
    hash_prefix();
    if (progress_) progress_->resume_from(have_);
  }

  [[nodiscard]] uint64_t have() const { return have_; }

  void begin(const http_detail::Response& r) override {
    if (r.status == 206 && r.range_start != have_)
      fail("fetching " + url_ + ": asked for bytes from " + std::to_string(have_) +
           ", the server sent them from " +
           (r.range_start ? std::to_string(*r.range_start) : "an unknown offset"));
    if (r.status != 206 && have_ > 0) {  // the server ignored the range: start over
      truncate_all();
      if (progress_) progress_->resume_from(0);
    }
    if (r.total && *r.total != e_.size)
      fail("fetching " + url_ + ": the server's file has " + std::to_string(*r.total) +
           " bytes, the signed index says " + std::to_string(e_.size));
  }

  void data(std::span<const std::byte> bytes) override {
    if (bytes.size() > e_.size - have_)
      fail("fetching " + url_ + ": the server sends more than the " + std::to_string(e_.size) +
           " bytes the signed index says");
    pwrite_all(fd_.get(), bytes, have_, path_);
    hash_.update(bytes);
    have_ += bytes.size();
    unsynced_ += bytes.size();
    if (unsynced_ >= kSyncEvery) sync();
    if (progress_) progress_->set(have_);
  }

  // After the last byte: size and SHA-256 against the index; a mismatch deletes the file.
  void finish() {
    sync();
    if (have_ != e_.size)
      fail("fetching " + url_ + ": the server's file ended after " + std::to_string(have_) +
           " bytes, the signed index says " + std::to_string(e_.size));
    const std::string got = to_hex(hash_.finish());
    if (got != lower(e_.sha256)) {
      ::unlink(path_.c_str());
      fail("downloading " + url_ + ": the download does not match the signed index (sha256 " + got +
           ", expected " + e_.sha256 + "); deleted " + path_ + ", try again");
    }
    if (progress_) progress_->finish();
  }

 private:
  void truncate_all() {
    if (::ftruncate(fd_.get(), 0) != 0) fail_errno("truncate " + path_, errno);
    have_ = 0;
    hash_ = Sha256();
  }
  void hash_prefix() {
    std::vector<std::byte> buf(1 * MiB);
    for (uint64_t at = 0; at < have_;) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), have_ - at));
      const size_t got = pread_full(fd_.get(), std::span(buf.data(), want), at, path_);
      if (got == 0) break;
      hash_.update(std::span<const std::byte>(buf.data(), got));
      at += got;
    }
  }
  void sync() {
    if (unsynced_ == 0) return;
    fsync_fd(fd_.get(), path_);
    unsynced_ = 0;
  }

  const std::string& url_;
  const std::string& path_;
  const DownloadExpect& e_;
  Progress* progress_;
  UniqueFd fd_;
  Sha256 hash_;
  uint64_t have_ = 0, unsynced_ = 0;
};

}  // namespace

void download_to_file(const std::string& url, const std::string& path, const DownloadExpect& e,
                      const HttpOptions& o, Progress* progress) {
  FileSink sink(url, path, e, progress);
  if (sink.have() < e.size)
    http_detail::with_retries(o,
                              [&] { return http_detail::get_once(url, o, sink.have(), "", sink); });
  sink.finish();
}

}  // namespace osup
